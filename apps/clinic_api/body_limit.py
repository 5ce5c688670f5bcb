"""A size limit on request bodies, answered with 413 before the body is read whole."""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE = "the request body is larger than {limit} bytes"
# The result upload streams a PDF and enforces its own, larger limit (storage.max_upload_bytes).
OWN_LIMIT = [("PUT", re.compile(r"/exams/[^/]+/result"))]


class BodyLimit:
    """413 for a body over `max_bytes`: at once when Content-Length says so (nothing is read), otherwise as soon as
    the bytes received pass it (a chunked body has no length). Plain ASGI, like main.Observe, and outside the routes:
    FastAPI reads a JSON body whole before validating it, whatever its size."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(
            scope["method"] == method and path.fullmatch(scope["path"]) for method, path in OWN_LIMIT
        ):
            await self.app(scope, receive, send)
            return
        too_large = HTTPException(413, TOO_LARGE.format(limit=self.max_bytes))
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await JSONResponse({"detail": too_large.detail}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # raised where the route reads the body; FastAPI answers it (413)
                raise too_large
            return message

        await self.app(scope, counting, send)
