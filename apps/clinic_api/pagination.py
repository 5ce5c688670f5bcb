"""The API's one way of paging a list: `limit` (bounded) and an opaque `cursor`, the next page's URL in a
`Link: <...>; rel="next"` header (RFC 8288), absent on the last page.

Pages are keyset pages (rows after the last one shown, in a stable order ending with the id), so a row inserted or
deleted between two fetches neither repeats nor skips another. A cursor is the last row's key, signed with a key
derived from the API's token secret and bound to the list and the caller: a garbled, altered or someone else's
cursor is a 422 naming `cursor`, never a 500 and never a view of rows the caller could not list anyway."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Query, Request, Response

from clinic_api.errors import invalid

PAGE_DEFAULT = 50
PAGE_MAX = 100
CURSOR_MAX_LENGTH = 512  # a signed key of a timestamp and an id is ~150 characters
SIGNATURE_BYTES = 16

Limit = Annotated[int, Query(ge=1, le=PAGE_MAX, description=f"Items per page, 1-{PAGE_MAX}")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=CURSOR_MAX_LENGTH,
        description='Where the page starts: the `cursor` of the previous answer\'s `Link: <...>; rel="next"` header',
    ),
]
NEXT_PAGE: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "Link": {
                "description": 'The next page\'s URL, `<...>; rel="next"` (RFC 8288); absent on the last page',
                "schema": {"type": "string"},
            }
        }
    }
}
"""A paged list's OpenAPI `responses` entry for its 200 (merged with the response model FastAPI documents)."""
T = TypeVar("T")
GARBLED = "cursor is not one this list gave you (altered, truncated, or from another list or account)"


def _key(secret: str) -> bytes:
    # Derived, so that a cursor's signature is never usable as anything the token secret signs.
    return hmac.new(secret.encode(), b"clinic-api list cursor v1", hashlib.sha256).digest()


def encode(secret: str, scope: str, user_id: int, position: list[Any]) -> str:
    """An opaque cursor for the row at `position` (JSON values) of list `scope` as `user_id` sees it."""
    payload = json.dumps([scope, user_id, position], separators=(",", ":")).encode()
    signature = hmac.new(_key(secret), payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]
    return f"{_b64(payload)}.{_b64(signature)}"


def decode(secret: str, scope: str, user_id: int, cursor: str, shape: tuple[type, ...]) -> list[Any]:
    """The position `encode` signed into `cursor` for this list and caller, its values of the types in `shape`; a
    422 naming `cursor` otherwise."""
    try:
        payload_text, signature_text = cursor.split(".")
        payload, signature = _unb64(payload_text), _unb64(signature_text)
    except (ValueError, binascii.Error):
        raise invalid("cursor", GARBLED, where="query") from None
    expected = hmac.new(_key(secret), payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]
    if not hmac.compare_digest(signature, expected):
        raise invalid("cursor", GARBLED, where="query")
    # Signed by us: the shape is ours, but checked all the same (a key change between versions must not be a 500).
    signed_scope, signed_user, position = json.loads(payload)
    if signed_scope != scope or signed_user != user_id:
        raise invalid("cursor", GARBLED, where="query")
    if not isinstance(position, list) or [type(v) for v in position] != list(shape):
        raise invalid("cursor", GARBLED, where="query")
    return position


def start(request: Request, scope: str, user_id: int, cursor: str | None, shape: tuple[type, ...]) -> list[Any] | None:
    """Where a page of list `scope` starts for `user_id`: the position signed into `cursor` (see `decode`), None for
    the first page. API routes and portal pages call this alike, so both page the one way."""
    if cursor is None:
        return None
    return decode(_secret(request), scope, user_id, cursor, shape)


def next_cursor(
    request: Request, scope: str, user_id: int, rows: Sequence[T], limit: int, position: Callable[[T], list[Any]]
) -> str | None:
    """The cursor of the page after `rows[:limit]` (`rows` fetched with `limit + 1`, so a row past the page means
    there is one), signed from the last shown row's `position`; None on the last page."""
    if len(rows) <= limit:
        return None
    return encode(_secret(request), scope, user_id, position(rows[limit - 1]))


def link_next(request: Request, response: Response, cursor: str | None) -> None:
    """Announces the next page, when there is one: this request's URL (its other parameters, filters and `limit`
    kept) with `cursor`. Relative, so it holds behind the load balancer whatever host and scheme the client used."""
    if cursor is not None:
        query = request.url.include_query_params(cursor=cursor).query
        response.headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'


def _secret(request: Request) -> str:
    # Read from the app, as deps reads it: no dependency to solve, and the pages (which have no SettingsDep) alike.
    return request.app.state.settings.auth.jwt_secret.get_secret_value()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError(text)
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
