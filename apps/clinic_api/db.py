"""The engine, the connection pool of the hot paths and its compiled statements (routes get them through deps.py)."""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import HTTPException, status
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import ClauseElement, Engine
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clinic_api.settings import Settings
from clinic_common import database
from clinic_common.database import SecretCredentials, create_engine

APPLICATION_NAME = "clinic-api"
# The hot pool's connections return rows as dicts (`row_factory` in its connection kwargs).
HotPool = AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]


def make_engine(settings: Settings) -> Engine:
    return create_engine(settings.database, settings.aws, APPLICATION_NAME)


def make_hot_pool(settings: Settings) -> HotPool:
    """Connections for the patient's hot paths (exam list, download link), used on the event loop. A sync endpoint
    pays a thread-pool hop and contends with the loop for the GIL: that was 40 % of the exam list's CPU
    (bench/bench_api.py). In autocommit, as each hot path is one statement. The app's lifespan opens and closes it;
    it holds `database.pool_size` connections beside the engine's."""
    db = settings.database
    credentials = SecretCredentials(db.secret_arn, settings.aws) if db.secret_arn else None
    idle = _IdleSince()

    async def connect_kwargs() -> dict[str, Any]:
        user, password = db.user, db.password.get_secret_value() or None
        if credentials:  # read afresh for each new connection (a few per hour), so a rotated password is picked up
            user, password = await asyncio.to_thread(credentials.get, True)
        return {
            "host": db.host,
            "port": db.port,
            "dbname": db.name,
            "user": user,
            "password": password,
            "sslmode": db.sslmode,
            "connect_timeout": db.connect_timeout,
            "application_name": APPLICATION_NAME,
            "autocommit": True,
            "row_factory": dict_row,
        }

    pool: HotPool = AsyncConnectionPool(
        kwargs=connect_kwargs,
        min_size=db.pool_size,
        max_size=db.pool_size,
        open=False,
        timeout=db.connect_timeout,
        max_lifetime=1800,
        name="clinic-api-hot",
        configure=idle.stamp,
        reset=idle.stamp,
        check=idle.ping_if_idle,
    )
    return pool


class _IdleSince:
    """The engine's rule (clinic_common.database.PING_AFTER_IDLE_SECONDS) for the hot pool: a connection idle for
    longer is pinged before use; one in steady use is not."""

    def __init__(self) -> None:
        self._since: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = weakref.WeakKeyDictionary()

    async def stamp(self, connection: psycopg.AsyncConnection[Any]) -> None:  # on connect and on every return
        self._since[connection] = time.monotonic()

    async def ping_if_idle(self, connection: psycopg.AsyncConnection[Any]) -> None:
        if time.monotonic() - self._since.get(connection, 0.0) > database.PING_AFTER_IDLE_SECONDS:
            await AsyncConnectionPool.check_connection(connection)  # raises: the pool discards it, hands out another


@dataclass(frozen=True)
class Prepared:
    """A SQLAlchemy statement compiled once, at import, for psycopg, and run on the hot pool: no statement building,
    cache-key walk or row processing per request (together ~75 % of a 20-row list's database time;
    bench/bench_api.py). psycopg prepares it server-side after a few executions."""

    sql: str
    defaults: dict[str, Any]

    @classmethod
    def of(cls, statement: ClauseElement) -> Prepared:
        compiled = statement.compile(dialect=psycopg_dialect())
        return cls(str(compiled), dict(compiled.params))

    async def fetch(self, pool: HotPool, **params: Any) -> list[dict[str, Any]]:
        try:
            async with pool.connection() as connection:
                cursor = await connection.execute(self.sql, {**self.defaults, **params})
                return await cursor.fetchall()
        except psycopg.OperationalError:
            # The server went away (restart, failover): this connection is discarded on its return. Testing the
            # others now spares the next requests one failure each.
            await pool.check()
            raise


def add_unique(session: Session, row: object, conflict: str) -> None:
    """Adds `row` and flushes; a unique constraint the database enforces becomes a 409 naming the conflict."""
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, conflict) from None
