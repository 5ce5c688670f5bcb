"""CSRF tokens for every unsafe request under /portal, signed in or not.

A token is an HMAC of a secret the browser holds in an HttpOnly cookie: the session's id when signed in, else a
random pre-session cookie (the sign-in, registration and password-reset forms are protected too). Another site can
make the browser send those cookies (SameSite=Lax already stops its POSTs; this covers older browsers and same-site
subdomains) but cannot read them, so it cannot write the token. Forms carry it as `csrf_token`
(`{{ csrf_field() }}`), htmx requests as the `X-CSRF-Token` header (`<body hx-headers>` in web/base.html)."""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request, status
from markupsafe import Markup, escape

from clinic_api.web import cookies
from clinic_api.web.session import SESSION_COOKIE

FIELD = "csrf_token"
HEADER = "x-csrf-token"
PRE_SESSION_COOKIE = "csrf"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_FAILED = "csrf"
"""The detail of the 403 a missing or wrong token gets (web.errors shows its own page for it)."""


def _binding(request: Request) -> str | None:
    return cookies.get(request, SESSION_COOKIE) or cookies.get(request, PRE_SESSION_COOKIE)


def token(request: Request) -> str:
    """The token forms of this response must carry. Without any cookie to bind it to, a pre-session cookie is made
    and `render` sets it on the response."""
    binding = _binding(request) or getattr(request.state, "new_csrf_seed", None)
    if binding is None:
        binding = request.state.new_csrf_seed = secrets.token_urlsafe(32)
    return cookies.sign(request, "csrf", binding)


def field(request: Request) -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(FIELD, escape(token(request)))


async def protect(request: Request) -> None:
    """A dependency of every portal router (web.install): 403 for an unsafe request without the right token."""
    if request.method not in UNSAFE:
        return
    sent = request.headers.get(HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(FIELD)
        sent = value if isinstance(value, str) else None
    binding = _binding(request)
    if not sent or binding is None or not hmac.compare_digest(sent, cookies.sign(request, "csrf", binding)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, CSRF_FAILED)
