"""The portal's cookies: names, flags and the key that signs what the server gives the browser to keep."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request
from starlette.responses import Response

from clinic_api.settings import Settings


def secure(request: Request) -> bool:
    return request.app.state.settings.web.secure_cookies


def name(request: Request, base: str) -> str:
    """`__Host-<base>` when cookies are Secure: the browser then takes it only from HTTPS, for the whole host, never
    set by a sibling subdomain."""
    return f"__Host-{base}" if secure(request) else base


def get(request: Request, base: str) -> str | None:
    return request.cookies.get(name(request, base))


def put(response: Response, request: Request, base: str, value: str, max_age: int | None = None) -> None:
    """HttpOnly (no script reads it), SameSite=Lax (not sent on another site's POST), Secure unless
    `web.secure_cookies` is off; path / as `__Host-` requires."""
    response.set_cookie(
        name(request, base), value, max_age=max_age, path="/", secure=secure(request), httponly=True, samesite="lax"
    )


def drop(response: Response, request: Request, base: str) -> None:
    response.delete_cookie(name(request, base), path="/", secure=secure(request), httponly=True, samesite="lax")


def signing_key(settings: Settings, purpose: str) -> bytes:
    """A key of its own per purpose, derived from the API's secret (rotating that secret voids forms and flashes
    in flight, nothing more)."""
    secret = settings.auth.jwt_secret.get_secret_value().encode()
    return hmac.new(secret, f"clinic:web:{purpose}".encode(), hashlib.sha256).digest()


def sign(request: Request, purpose: str, value: str) -> str:
    key = signing_key(request.app.state.settings, purpose)
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
