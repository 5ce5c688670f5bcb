"""AWS settings and clients (an emulator endpoint for local runs and tests)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from pydantic import BaseModel


class AwsSettings(BaseModel):
    region: str = "eu-west-1"
    endpoint_url: str | None = None
    """Only for an emulator (moto); None uses AWS's own endpoints."""


def client(service: str, aws: AwsSettings, **config: Any) -> Any:
    options = {
        "retries": {"mode": "standard", "max_attempts": 3},
        "connect_timeout": 5,
        "read_timeout": 60,
        "max_pool_connections": 20,
        **config,
    }
    return boto3.session.Session().client(
        service, region_name=aws.region, endpoint_url=aws.endpoint_url, config=Config(**options)
    )
