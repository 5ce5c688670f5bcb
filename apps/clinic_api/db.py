"""Engine and per-request sessions."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from clinic_api.settings import Settings
from clinic_common.database import create_engine


def make_engine(settings: Settings) -> Engine:
    return create_engine(settings.database, settings.aws, "clinic-api")


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
