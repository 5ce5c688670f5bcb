"""Database, AWS and logging plumbing the notifier needs from its environment.

Interim: these mirror the shared groups clinic_common is to provide (same environment names, NOTIFIER_DATABASE__*
and NOTIFIER_AWS__*), so switching to it changes no deployment setting.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any

import boto3
from botocore.config import Config
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import URL


class DatabaseSettings(BaseModel):
    host: str = "localhost"
    """Host name, or a directory holding the server's Unix socket."""
    port: int = Field(5432, ge=1, le=65535)
    name: str = "clinic"
    user: str = "clinic"
    password: SecretStr = SecretStr("")
    """Ignored when secret_arn is set."""
    secret_arn: str | None = None
    """RDS-managed secret in Secrets Manager ({"username", "password"}); read at connect time, re-read on rotation."""
    sslmode: str = "prefer"
    pool_size: int = Field(5, ge=1, le=50)
    connect_timeout: int = Field(5, ge=1, le=60)


class AwsSettings(BaseModel):
    region: str = "eu-west-1"
    endpoint_url: str | None = None
    """Only for an emulator (moto); None uses AWS's own endpoints."""


def client(service: str, aws: AwsSettings, **config: Any) -> Any:
    options = {"retries": {"mode": "standard", "max_attempts": 3}, "connect_timeout": 5, "read_timeout": 60,
               "max_pool_connections": 20, **config}
    return boto3.session.Session().client(service, region_name=aws.region, endpoint_url=aws.endpoint_url,
                                          config=Config(**options))


class _SecretCredentials:
    """Credentials from the RDS-managed secret, cached until a login fails (the secret was rotated)."""

    def __init__(self, secret_arn: str, aws: AwsSettings):
        self.secret_arn = secret_arn
        self.client = client("secretsmanager", aws)
        self._lock = threading.Lock()
        self._value: tuple[str, str] | None = None

    def get(self, refresh: bool = False) -> tuple[str, str]:
        with self._lock:
            if refresh or self._value is None:
                secret = json.loads(self.client.get_secret_value(SecretId=self.secret_arn)["SecretString"])
                self._value = (secret["username"], secret["password"])
            return self._value


def create_engine(db: DatabaseSettings, aws: AwsSettings) -> Engine:
    url = URL.create("postgresql+psycopg", username=db.user, password=db.password.get_secret_value() or None,
                     host=db.host, port=db.port, database=db.name,
                     query={"sslmode": db.sslmode, "connect_timeout": str(db.connect_timeout),
                            "application_name": "clinic-notifier"})
    engine = sa_create_engine(url, pool_size=db.pool_size, max_overflow=db.pool_size, pool_pre_ping=True,
                              pool_recycle=1800)
    if db.secret_arn:
        credentials = _SecretCredentials(db.secret_arn, aws)

        @event.listens_for(engine, "do_connect")
        def _connect(dialect: Any, _record: Any, cargs: Any, cparams: dict) -> Any:
            cparams["user"], cparams["password"] = credentials.get()
            try:
                return dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:
                if "authentication" not in str(exc):
                    raise
                cparams["user"], cparams["password"] = credentials.get(refresh=True)
                return dialect.connect(*cargs, **cparams)
    return engine


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "service": self.service, "logger": record.name,
            "message": record.getMessage()}
        doc.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime
