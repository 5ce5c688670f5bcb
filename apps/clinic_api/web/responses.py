"""Post-redirect-get and flash messages: `redirect(request, "/portal/...", flash=t.gettext("Saved"))`.

A flash travels in a signed cookie to the next page rendered, which shows it once and drops the cookie; signed, so
nobody can plant a message on the clinic's page through a cookie."""

from __future__ import annotations

import base64
import hmac
import json

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from clinic_api.web import cookies

FLASH_COOKIE = "flash"


def _encode(request: Request, messages: list[str]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(messages).encode()).decode().rstrip("=")
    return f"{payload}.{cookies.sign(request, 'flash', payload)}"


def flashes(request: Request) -> list[str]:
    """The messages waiting for this request (the cookie's, and any added while handling it)."""
    pending = list(getattr(request.state, "flashes", []))
    raw = cookies.get(request, FLASH_COOKIE)
    if raw and "." in raw:
        payload, signature = raw.rsplit(".", 1)
        if hmac.compare_digest(signature, cookies.sign(request, "flash", payload)):
            try:
                decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
                pending = [str(m) for m in decoded if isinstance(m, str)] + pending
            except ValueError:
                pass
    return pending


def keep_flash(response: Response, request: Request, message: str) -> None:
    """Adds `message` to those the next rendered page shows."""
    messages = [*flashes(request), message][-5:]  # a cookie has a few kB; five messages are plenty
    cookies.put(response, request, FLASH_COOKIE, _encode(request, messages), max_age=300)


def redirect(request: Request, url: str, flash: str | None = None, status_code: int = 303) -> RedirectResponse:
    """303 to `url` (a path), the next page showing `flash`."""
    response = RedirectResponse(url, status_code=status_code)
    if flash:
        keep_flash(response, request, flash)
    return response
