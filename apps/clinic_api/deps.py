"""What routes depend on, as `Annotated` aliases: a route's signature shows what it needs, and
`dependencies=[Depends(require_role(...))]` on its decorator shows who may call it. The one module that reads
`request.app.state`, where `create_app` keeps what lives as long as the process.

Every dependency but the session is `async def`, so it runs on the event loop: a plain `def` costs each request a hop
through the thread pool, which the async hot paths exist to avoid (bench/bench_api.py). The one with I/O, the account
check of `current_user`, awaits the hot pool. `require_role` and a `CurrentUser` parameter share one token decoding
(FastAPI solves a dependency once per request) and one account check (remembered on the request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from botocore.client import BaseClient
from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine, Integer, bindparam, select
from sqlalchemy.orm import Session

from clinic_api.db import Breaker, HotPool, Prepared
from clinic_api.models import User
from clinic_api.security import FORBIDDEN, INVALID_TOKEN, ROLES, Principal, decode_token
from clinic_api.settings import Settings
from clinic_api.throttle import LoginThrottle

_bearer = HTTPBearer(auto_error=False)


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _engine(request: Request) -> Engine:
    return request.app.state.engine


async def _hot_pool(request: Request) -> HotPool:
    return request.app.state.hot_pool


async def _breaker(request: Request) -> Breaker:
    return request.app.state.hot_pool.breaker


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
BreakerDep = Annotated[Breaker, Depends(_breaker)]
S3Dep = Annotated[BaseClient, Depends(_s3)]
LoginThrottleDep = Annotated[LoginThrottle, Depends(_login_throttle)]
SessionDep = Annotated[Session, Depends(_session)]
PathId = Annotated[int, Path(ge=1, le=2**31 - 1, description="a row id (PostgreSQL integer)")]


async def _token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The principal of a valid bearer token; 401 otherwise. Verifying a signature is microseconds of CPU. The secret
    is read here rather than through SettingsDep: one dependency less to solve on every authenticated request."""
    secret = request.app.state.settings.auth.jwt_secret.get_secret_value()
    principal = decode_token(credentials.credentials, secret) if credentials else None
    if principal is None:
        raise _unauthorized()
    return principal


def _unauthorized() -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, INVALID_TOKEN, headers={"WWW-Authenticate": "Bearer"})


# Role and token version of an account that is neither deleted nor disabled: the primary key, one round trip.
ACCOUNT_STATE = Prepared.of(
    select(User.role, User.token_version).where(
        User.id == bindparam("user_id", type_=Integer), User.disabled_at.is_(None)
    )
)


async def _check_account(request: Request, principal: Principal) -> None:
    """401 unless the token's account exists, is not disabled, and still has the token's version and role: disabling,
    deleting or revoking (security.revoke_tokens) takes effect on the next request, on every replica."""
    if getattr(request.state, "account_checked", None) == principal:
        return
    rows = await ACCOUNT_STATE.fetch(request.app.state.hot_pool, user_id=principal.id)
    if not rows or (rows[0]["role"], rows[0]["token_version"]) != (principal.role, principal.version):
        raise _unauthorized()
    request.state.account_checked = principal


async def current_user(request: Request, principal: Annotated[Principal, Depends(_token)]) -> Principal:
    """The caller: a valid bearer token of an account that may still use it; 401 otherwise."""
    await _check_account(request, principal)
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def require_role(*roles: str) -> Callable[..., Awaitable[None]]:
    """A route dependency: 401 without a valid token, 403 unless the caller has one of `roles`."""
    unknown = set(roles) - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"require_role{roles!r}: {sorted(unknown) or 'no role'} is invalid; allowed: {ROLES}")

    async def has_role(request: Request, principal: Annotated[Principal, Depends(_token)]) -> None:
        # The role is checked before the account: a caller without it is refused without a database round trip.
        if principal.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, FORBIDDEN)
        await _check_account(request, principal)

    has_role.roles = frozenset(roles)  # type: ignore[attr-defined]  # who may call, readable from the route table
    return has_role
