"""The engine, the connection pool of the hot paths and its compiled statements (routes get them through deps.py)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from fastapi import HTTPException, status
from psycopg.adapt import AdaptersMap
from psycopg.rows import DictRow, dict_row
from psycopg.types.datetime import TimestamptzBinaryLoader, TimestamptzLoader
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import ClauseElement, Engine, event
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clinic_api.settings import Settings
from clinic_common import database
from clinic_common.database import SecretCredentials, create_engine

APPLICATION_NAME = "clinic-api"
# While the database is down, how long requests fail fast before one tries it again (and Retry-After).
BREAKER_PAUSE_SECONDS = 1.0


class DatabaseUnavailable(Exception):
    """No connection to the database could be had: the API answers 503 with Retry-After (main.create_app)."""


class Breaker:
    """Fails fast while the database is down. Once a connection attempt has failed, requests that need a new
    connection get DatabaseUnavailable at once for `pause` seconds, rather than each waiting out the connect timeout
    (an unreachable host drops packets) or the hot pool's wait for a connection, holding a worker thread or a client
    for 5 s apiece. Then one request tries again while the others keep failing fast; a connection made closes it."""

    def __init__(self, pause: float = BREAKER_PAUSE_SECONDS):
        self.pause = pause
        self._retry_at = 0.0  # 0: closed
        self._lock = threading.Lock()
        self._bypassed = ContextVar("breaker_bypassed", default=False)

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.pause))

    def check(self) -> None:
        if not self._retry_at or self._bypassed.get():
            return
        with self._lock:
            now = time.monotonic()
            if self._retry_at and now < self._retry_at:
                raise DatabaseUnavailable("the database did not answer a moment ago")
            if self._retry_at:
                self._retry_at = now + self.pause  # this caller tries; the others keep failing fast meanwhile

    @contextmanager
    def bypassed(self) -> Iterator[None]:
        """Connects even while open: for the readiness check, which must see the database itself (and whose success
        then closes the breaker before the next request)."""
        token = self._bypassed.set(True)
        try:
            yield
        finally:
            self._bypassed.reset(token)

    def trip(self) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + self.pause

    def reset(self) -> None:
        if self._retry_at:
            with self._lock:
                self._retry_at = 0.0


def make_engine(settings: Settings, breaker: Breaker | None = None) -> Engine:
    """The SQLAlchemy engine. With a breaker (the API's), a new connection is not attempted while it is open, a
    failed attempt opens it and a successful one closes it; every checkout is pinged (`pool_pre_ping`), so after a
    database restart the first request gets a fresh connection instead of failing on a stale one."""
    engine = create_engine(settings.database, settings.aws, APPLICATION_NAME, pre_ping=breaker is not None)
    if breaker is not None:

        @event.listens_for(engine, "do_connect", insert=True)  # before the secret's listener, which connects
        def _gate(*_args: Any) -> None:
            breaker.check()

        @event.listens_for(engine, "handle_error")
        def _failed(context: Any) -> None:
            if context.connection is None and not context.is_pre_ping:  # connecting failed, not a statement
                breaker.trip()

        @event.listens_for(engine, "connect")
        def _connected(*_args: Any) -> None:
            breaker.reset()

    @event.listens_for(engine, "connect")
    def _instants_always_load(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.adapters.register_loader("timestamptz", StoredInstantLoader)
        dbapi_connection.adapters.register_loader("timestamptz", StoredInstantBinaryLoader)

    return engine


def _edge(negative: bool) -> datetime:
    return (datetime.min if negative else datetime.max).replace(tzinfo=UTC)


class StoredInstantLoader(TimestamptzLoader):
    """Reads an instant Python cannot hold (PostgreSQL's go from 4713 BC to 294276 AD, and infinity) as the nearest
    one it can, rather than failing every read of the row: whatever is stored, a list still answers. The API refuses
    such instants, but rows written before it did, or by hand, may hold them."""

    def load(self, data: Any) -> datetime:
        try:
            return super().load(data)
        except psycopg.DataError:
            text = bytes(data)
            return _edge(text.startswith(b"-") or text.endswith(b" BC"))


class StoredInstantBinaryLoader(TimestamptzBinaryLoader):
    """StoredInstantLoader's binary twin (microseconds since 2000 as a signed 64-bit integer)."""

    def load(self, data: Any) -> datetime:
        try:
            return super().load(data)
        except psycopg.DataError:
            return _edge(int.from_bytes(bytes(data), "big", signed=True) < 0)


INSTANTS = AdaptersMap(psycopg.adapters)
"""The hot pool's adapters: psycopg's, with instants that always load."""
INSTANTS.register_loader("timestamptz", StoredInstantLoader)
INSTANTS.register_loader("timestamptz", StoredInstantBinaryLoader)


class HotPool(AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]):
    """The hot paths' pool (rows as dicts, `row_factory` in its connection kwargs) with the API's breaker."""

    def __init__(self, breaker: Breaker, **kwargs: Any):
        super().__init__(**kwargs)
        self.breaker = breaker


def make_hot_pool(settings: Settings, breaker: Breaker | None = None) -> HotPool:
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
            "tcp_user_timeout": database.tcp_user_timeout_ms(db),
            "application_name": APPLICATION_NAME,
            "autocommit": True,
            "row_factory": dict_row,
            "context": INSTANTS,
        }

    return HotPool(
        breaker or Breaker(),
        kwargs=connect_kwargs,
        min_size=db.pool_size,
        max_size=db.pool_size,
        open=False,
        timeout=db.connect_timeout,
        # After an outage the pool retries a lost connection with a growing backoff (1, 2, 4 ... s) for this long,
        # then gives the slot up; a request then makes it connect at once. Kept short, so a database that is back
        # is not left waiting for the next attempt of a long backoff (up to minutes with the default of 300 s).
        reconnect_timeout=2.0 * db.connect_timeout,
        max_lifetime=1800,
        name="clinic-api-hot",
        configure=idle.stamp,
        reset=idle.stamp,
        check=idle.ping_if_idle,
    )


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
        """The statement's rows. A connection found lost (a restart, a failover) is dropped and the statement runs
        once more on another, so the caller does not see it; with no connection to be had, DatabaseUnavailable."""
        rows = await self._once(pool, params, None)
        if rows is None:
            # Testing the other idle connections now spares the next requests one lost connection each.
            await pool.check()
            rows = await self._once(pool, params, RETRY_WAIT_SECONDS)
        if rows is None:
            pool.breaker.trip()
            raise DatabaseUnavailable("the database connection was lost twice in a row")
        return rows

    async def _once(self, pool: HotPool, params: dict[str, Any], timeout: float | None) -> list[dict[str, Any]] | None:
        """The rows, or None when the connection turned out lost (the pool discards it on its return)."""
        pool.breaker.check()
        try:
            async with pool.connection(timeout) as connection:
                try:
                    cursor = await connection.execute(self.sql, {**self.defaults, **params})
                    rows = await cursor.fetchall()
                except psycopg.OperationalError:
                    if connection.broken:
                        return None
                    raise  # the statement's own error (e.g. a statement timeout): not retried
        except PoolTimeout:
            pool.breaker.trip()
            raise DatabaseUnavailable("no database connection within the pool's timeout") from None
        pool.breaker.reset()
        return rows


# A retry after a lost connection waits this long for another: enough for a fresh connection to a database that is
# back, short enough not to hold the request when it is not.
RETRY_WAIT_SECONDS = 1.0


def add_unique(session: Session, row: object, conflict: str) -> None:
    """Adds `row` and flushes; a unique constraint the database enforces becomes a 409 naming the conflict."""
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, conflict) from None
