"""Engine and per-request sessions."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import Engine
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


def add_unique(session: Session, row: object, conflict: str) -> None:
    """Adds `row` and flushes; a unique constraint the database enforces becomes a 409 naming the conflict."""
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, conflict) from None
