"""Who is signed in to the portal: server-side sessions (`web_sessions`), the `WebUser` dependency and `web_role`.

The cookie holds a random id (256 bits); the table holds its SHA-256. Every page checks, in one statement on the hot
pool, that the session is within its idle and absolute timeouts and that its account is neither disabled (nor
erased, which disables) nor revoked (`token_version`, as the API's `deps.current_user` checks its tokens): a disabled
account's sessions are dead on their next request, on every replica."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import DateTime, bindparam, delete, or_, update
from sqlalchemy.orm import Session

from clinic_api.db import Prepared
from clinic_api.models import User, now
from clinic_api.security import ROLES, Principal
from clinic_api.web import cookies
from clinic_api.web.models import WebSession

SESSION_COOKIE = "session"
_at = DateTime(timezone=True)

# The live session of a usable account, touched (seen_at) as it is read: one round trip per page.
TOUCH = Prepared.of(
    update(WebSession)
    .where(
        WebSession.id_hash == bindparam("id_hash"),
        WebSession.user_id == User.id,
        User.disabled_at.is_(None),
        User.token_version == WebSession.token_version,
        WebSession.seen_at > bindparam("idle_since", type_=_at),
        WebSession.created_at > bindparam("started_since", type_=_at),
    )
    .values(seen_at=bindparam("now", type_=_at))
    .returning(User.id, User.role, User.full_name, User.email, User.token_version)
)


@dataclass(frozen=True)
class SignedIn:
    """The signed-in account, as pages see it."""

    id: int
    role: str
    name: str
    email: str
    principal: Principal
    """What the API's functions take as the caller."""


class SignInRequired(Exception):
    """Raised by `WebUser` without a live session: answered with 303 to the sign-in page (web.errors)."""

    def __init__(self, next_path: str, expired: bool):
        self.next_path, self.expired = next_path, expired


def hash_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def web_user(request: Request) -> SignedIn:
    """The signed-in account; without a live session, SignInRequired (a session cookie that no longer works: the
    session expired, or ended elsewhere, and the sign-in page says so)."""
    known = getattr(request.state, "web_user", None)
    if known is not None:
        return known
    session_id = cookies.get(request, SESSION_COOKIE)
    next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not session_id:
        raise SignInRequired(next_path, expired=False)
    web = request.app.state.settings.web
    at = now()
    rows = await TOUCH.fetch(
        request.app.state.hot_pool,
        id_hash=hash_id(session_id),
        idle_since=at - timedelta(minutes=web.session_idle_minutes),
        started_since=at - timedelta(minutes=web.session_absolute_minutes),
        now=at,
    )
    if not rows:
        raise SignInRequired(next_path, expired=True)
    row = rows[0]
    user = SignedIn(
        row["id"], row["role"], row["full_name"], row["email"], Principal(row["id"], row["role"], row["token_version"])
    )
    request.state.web_user = user
    # The API's deps.current_user remembers the account it checked: functions shared with it need not check again.
    request.state.account_checked = user.principal
    return user


WebUser = Annotated[SignedIn, Depends(web_user)]


def web_role(*roles: str) -> Callable[..., Awaitable[None]]:
    """A page dependency: sign-in first without a session, the 403 page unless the account has one of `roles`."""
    unknown = set(roles) - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"web_role{roles!r}: {sorted(unknown) or 'no role'} is invalid; allowed: {ROLES}")

    async def has_role(user: WebUser) -> None:
        if user.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "your role may not see this page")

    return has_role


def start(session: Session, request: Request, user: User) -> str:
    """A new session for `user` (at sign-in: a new id every time, so an id planted before sign-in is worthless); the
    browser's previous one, if any, and the expired ones of anybody are deleted. Returns the cookie's value."""
    web = request.app.state.settings.web
    at = now()
    old = cookies.get(request, SESSION_COOKIE)
    session.execute(
        delete(WebSession).where(
            or_(
                WebSession.id_hash == hash_id(old or ""),
                WebSession.seen_at <= at - timedelta(minutes=web.session_idle_minutes),
                WebSession.created_at <= at - timedelta(minutes=web.session_absolute_minutes),
            )
        )
    )
    session_id = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            id_hash=hash_id(session_id),
            user_id=user.id,
            token_version=user.token_version or 0,
            created_at=at,
            seen_at=at,
        )
    )
    return session_id


def end(session: Session, request: Request) -> None:
    """Deletes the browser's session row: its cookie, kept or copied, no longer signs anybody in."""
    session_id = cookies.get(request, SESSION_COOKIE)
    if session_id:
        session.execute(delete(WebSession).where(WebSession.id_hash == hash_id(session_id)))


def sign_in_url(next_path: str = "") -> str:
    return "/portal/sign-in" + (f"?next={quote(next_path, safe='/')}" if next_path else "")


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of the portal only (never another site: `//evil`, `/\\evil`)."""
    if value and value.startswith("/portal") and not value.startswith(("//", "/\\")) and "\\" not in value:
        return value
    return "/portal/"
