"""Database settings and engine: credentials from the RDS-managed secret in Secrets Manager, re-read on rotation."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import Engine, event, exc
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import URL

from clinic_common.aws import AwsSettings, client

# A pooled connection idle for longer than this is pinged before use. Pinging every checkout (pool_pre_ping) costs a
# round trip per request; a connection in steady use needs none: if the server went away under it, the request using
# it fails, as it would with pre-ping too, and the connection is discarded (a disconnect seen by SQLAlchemy renews the
# whole pool). A connection left idle across a restart or failover is caught here. The API's hot-path pool
# (clinic_api.db.make_hot_pool) follows the same rule.
PING_AFTER_IDLE_SECONDS = 5.0


class DatabaseSettings(BaseModel):
    host: str = "localhost"
    """Host name, or a directory holding the server's Unix socket."""
    port: int = Field(5432, ge=1, le=65535)
    name: str = "clinic"
    user: str = "clinic"
    password: SecretStr = SecretStr("")
    """Local use only; ignored when secret_arn is set."""
    secret_arn: str | None = None
    """RDS-managed secret ({"username", "password"}); read at connect time, re-read when a login fails."""
    sslmode: str = "prefer"
    pool_size: int = Field(5, ge=1, le=50)
    """The engine holds up to twice this (pool + overflow); the API's hot-path pool holds this many more."""
    connect_timeout: int = Field(5, ge=1, le=60)


class SecretCredentials:
    """(username, password) from an RDS-managed secret, cached until a caller asks for a refresh."""

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


def tcp_user_timeout_ms(db: DatabaseSettings) -> int:
    """How long sent data may stay unacknowledged before the connection is given up (libpq `tcp_user_timeout`). A
    server that vanished without closing its connections (a failover, a host gone) otherwise leaves a ping or a
    statement on them waiting for TCP's retransmissions, about 15 minutes on Linux: no breaker or pool timeout covers
    a connection already made. A server busy with a long statement still acknowledges what was sent to it."""
    return db.connect_timeout * 1000


def create_engine(
    db: DatabaseSettings,
    aws: AwsSettings,
    application_name: str,
    pre_ping: bool = False,
    max_overflow: int | None = None,
) -> Engine:
    """The engine, its pool bounded by `db.pool_size` and its waits by `db.connect_timeout` (a new connection, or a
    pooled one when all are in use), plus `max_overflow` more connections under load (`db.pool_size` when None).
    `pre_ping` pings every checkout (one round trip each, so no request ever fails on a connection that died while
    pooled); without it only connections idle for PING_AFTER_IDLE_SECONDS are."""
    url = URL.create(
        "postgresql+psycopg",
        username=db.user,
        password=db.password.get_secret_value() or None,
        host=db.host,
        port=db.port,
        database=db.name,
        query={
            "sslmode": db.sslmode,
            "connect_timeout": str(db.connect_timeout),
            "tcp_user_timeout": str(tcp_user_timeout_ms(db)),
            "application_name": application_name,
        },
    )
    engine = sa_create_engine(
        url,
        pool_size=db.pool_size,
        max_overflow=db.pool_size if max_overflow is None else max_overflow,
        pool_recycle=1800,
        pool_timeout=db.connect_timeout,
        pool_pre_ping=pre_ping,
        # A failed statement's parameters (emails, names, password hashes) never reach an exception's text, so no log.
        hide_parameters=True,
    )
    if not pre_ping:
        _ping_idle_connections(engine)
    if db.secret_arn:
        credentials = SecretCredentials(db.secret_arn, aws)

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


def _ping_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", time.monotonic()) <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 - any failure: the pool discards it and checks out another
            raise exc.DisconnectionError(f"idle connection failed its ping: {error}") from error
