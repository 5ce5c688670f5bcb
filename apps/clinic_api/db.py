"""Engine and per-request sessions."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from psycopg.rows import dict_row
from sqlalchemy import Connection, Engine, Executable
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clinic_api.settings import Settings
from clinic_common.database import create_engine


def make_engine(settings: Settings) -> Engine:
    return create_engine(settings.database, settings.aws, "clinic-api")


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def single_statement(request: Request) -> Connection:
    """A connection in autocommit for hot paths that do their work in one statement: no BEGIN and no ROLLBACK
    round trips around it, and a single statement is atomic on its own."""
    return request.app.state.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


@dataclass(frozen=True)
class Prepared:
    """A SQLAlchemy statement compiled once, at import, for psycopg. Hot paths run it on the pooled connection's
    driver cursor: no statement building, cache-key walk or row processing per request (together ~75 % of a
    20-row list's database time; bench/bench_api.py). psycopg prepares it server-side after a few executions."""

    sql: str
    defaults: dict[str, Any]

    @classmethod
    def of(cls, statement: Executable) -> "Prepared":
        compiled = statement.compile(dialect=psycopg_dialect())
        return cls(str(compiled), dict(compiled.params))

    def rows(self, connection: Connection, **params: Any) -> list[dict[str, Any]]:
        # A connection the server dropped fails here once; the pool's reset on return then discards it.
        with connection.connection.driver_connection.cursor(row_factory=dict_row) as cursor:
            return cursor.execute(self.sql, {**self.defaults, **params}).fetchall()


def add_unique(session: Session, row: object, conflict: str) -> None:
    """Adds `row` and flushes; a unique constraint the database enforces becomes a 409 naming the conflict."""
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, conflict) from None
