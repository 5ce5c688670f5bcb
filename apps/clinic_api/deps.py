"""What routes depend on, as `Annotated` aliases: a route's signature shows what it needs, and
`dependencies=[Depends(require_role(...))]` on its decorator shows who may call it. The one module that reads
`request.app.state`, where `create_app` keeps what lives as long as the process.

Every dependency but the session is `async def` and does no I/O, so it runs on the event loop: a plain `def` costs
each request a hop through the thread pool, which the async hot paths exist to avoid (bench/bench_api.py). FastAPI
solves a dependency once per request, so `require_role` and a `CurrentUser` parameter share one token check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from botocore.client import BaseClient
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from clinic_api.db import HotPool
from clinic_api.security import FORBIDDEN, INVALID_TOKEN, ROLES, LoginThrottle, Principal, decode_token
from clinic_api.settings import Settings

_bearer = HTTPBearer(auto_error=False)


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _engine(request: Request) -> Engine:
    return request.app.state.engine


async def _hot_pool(request: Request) -> HotPool:
    return request.app.state.hot_pool


async def _s3(request: Request) -> BaseClient:
    return request.app.state.s3


async def _login_throttle(request: Request) -> LoginThrottle:
    return request.app.state.login_throttle


def _session(engine: Annotated[Engine, Depends(_engine)]) -> Iterator[Session]:
    # Sync, as are the routes that use it: they run in the thread pool, and the session closes there after them.
    with Session(engine, expire_on_commit=False) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(_settings)]
EngineDep = Annotated[Engine, Depends(_engine)]
HotPoolDep = Annotated[HotPool, Depends(_hot_pool)]
"""The psycopg pool of the hot paths (clinic_api.db.make_hot_pool), for `Prepared.fetch` on the event loop."""
S3Dep = Annotated[BaseClient, Depends(_s3)]
LoginThrottleDep = Annotated[LoginThrottle, Depends(_login_throttle)]
SessionDep = Annotated[Session, Depends(_session)]


async def current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller, from a valid bearer token; 401 otherwise. Verifying a signature is microseconds of CPU. The secret
    is read here rather than through SettingsDep: one dependency less to solve on every authenticated request."""
    secret = request.app.state.settings.auth.jwt_secret.get_secret_value()
    principal = decode_token(credentials.credentials, secret) if credentials else None
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, INVALID_TOKEN, headers={"WWW-Authenticate": "Bearer"})
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def require_role(*roles: str) -> Callable[[Principal], Awaitable[None]]:
    """A route dependency: 401 without a valid token, 403 unless the caller has one of `roles`."""
    unknown = set(roles) - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"require_role{roles!r}: {sorted(unknown) or 'no role'} is invalid; allowed: {ROLES}")

    async def has_role(user: CurrentUser) -> None:
        if user.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, FORBIDDEN)

    has_role.roles = frozenset(roles)  # type: ignore[attr-defined]  # who may call, readable from the route table
    return has_role
