"""Notifier settings from the environment: prefix ``NOTIFIER_``, nested groups joined by ``__``.

NOTIFIER_QUEUE_URLS='["https://sqs.../clinic-account", ...]'   (JSON list, or comma-separated)
NOTIFIER_SES__FROM_ADDRESS=no-reply@clinic.example
NOTIFIER_SES__CONFIGURATION_SET=clinic
NOTIFIER_DATABASE__...   the shared DatabaseSettings (clinic_common), incl. SECRET_ARN for the RDS secret
NOTIFIER_AWS__...        the shared AwsSettings (clinic_common): REGION, ENDPOINT_URL
NOTIFIER_HTTP_PORT=8080  NOTIFIER_BATCH_SIZE=10  NOTIFIER_WAIT_SECONDS=20  NOTIFIER_SHUTDOWN_TIMEOUT_SECONDS=30
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Annotated

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from clinic_common.aws import AwsSettings
from clinic_common.database import DatabaseSettings

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Room for one batch after its long poll returns: claim, sends (SES retries wait 1 s, then 2 s), record, delete.
SHUTDOWN_BATCH_SECONDS = 10


class SesSettings(BaseModel):
    from_address: str
    """Verified SES identity the emails are sent from."""
    configuration_set: str | None = None
    """SES configuration set (event publishing, suppression); None sends without one."""

    @field_validator("from_address")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.fullmatch(value):
            raise ValueError(f"from_address = {value!r} is invalid; allowed: an email address")
        return value


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", env_nested_delimiter="__", extra="ignore")

    queue_urls: Annotated[list[str], NoDecode]
    """SQS queues to consume (account, appointment, exam, exam-result)."""
    ses: SesSettings
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=1, le=65535)
    batch_size: int = Field(10, ge=1, le=10)
    """Messages per receive (SQS allows at most 10)."""
    wait_seconds: int = Field(20, ge=0, le=20)
    """Long-poll wait (SQS allows at most 20 s)."""
    claim_lease_seconds: float = Field(30.0, gt=0)
    """After this long, a claim left by a dead worker is taken over: the queues' visibility timeout."""
    send_concurrency: int = Field(10, ge=1, le=50)
    shutdown_timeout_seconds: float = Field(30.0, gt=0, le=600)
    """After SIGTERM: time to finish the long poll in flight and the batch it brings, then the process exits."""
    log_level: str = "INFO"

    @field_validator("queue_urls", mode="before")
    @classmethod
    def _queue_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [u.strip() for u in text.split(",") if u.strip()]
        return value

    @field_validator("queue_urls")
    @classmethod
    def _queues(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("queue_urls is empty; allowed: one or more SQS queue URLs")
        for url in value:
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"queue_urls item {url!r} is invalid; allowed: an SQS queue URL")
        if len(set(value)) != len(value):
            raise ValueError("queue_urls has duplicates; allowed: each queue once")
        return value

    @model_validator(mode="after")
    def _shutdown_outlasts_a_long_poll(self) -> NotifierSettings:
        least = self.wait_seconds + SHUTDOWN_BATCH_SECONDS
        if self.shutdown_timeout_seconds < least:
            raise ValueError(
                f"shutdown_timeout_seconds (NOTIFIER_SHUTDOWN_TIMEOUT_SECONDS) = {self.shutdown_timeout_seconds:g} is "
                f"invalid; allowed: at least wait_seconds + {SHUTDOWN_BATCH_SECONDS} = {least}: a long poll in flight "
                "at SIGTERM returns within wait_seconds, and the batch it brings must still be sent and deleted"
            )
        return self


@lru_cache
def get_settings() -> NotifierSettings:
    return NotifierSettings()
