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
# The portal's result upload is a form (multipart) holding the PDF: the upload's limit plus room for the form's other
# fields and framing. Bounded here, not in its page: the portal's CSRF check parses the form before the page runs.
UPLOAD_FORMS = [("POST", re.compile(r"/portal/exams/[^/]+/result"))]
UPLOAD_FORM_OVERHEAD = 16 * 1024


class BodyLimit:
    """413 for a body over `max_bytes`: at once when Content-Length says so (nothing is read), otherwise as soon as
    the bytes received pass it (a chunked body has no length). Plain ASGI, like main.Observe, and outside the routes:
    FastAPI reads a JSON body whole before validating it, whatever its size."""

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int | None = None):
        self.app, self.max_bytes = app, max_bytes
        self.upload_form_bytes = None if upload_bytes is None else upload_bytes + UPLOAD_FORM_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(
            scope["method"] == method and path.fullmatch(scope["path"]) for method, path in OWN_LIMIT
        ):
            await self.app(scope, receive, send)
            return
        limit, upload_form = self.max_bytes, False
        if self.upload_form_bytes is not None and any(
            scope["method"] == method and path.fullmatch(scope["path"]) for method, path in UPLOAD_FORMS
        ):
            limit, upload_form = self.upload_form_bytes, True
        too_large = HTTPException(413, TOO_LARGE.format(limit=limit))
        length = Headers(scope=scope).get("content-length")
        declared_too_large = length is not None and (not length.isdigit() or int(length) > limit)
        if declared_too_large and not upload_form:
            await JSONResponse({"detail": too_large.detail}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counting() -> Message:
            nonlocal received
            if declared_too_large:  # before reading anything; the portal's error handler answers with its 413 page
                raise too_large
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:  # raised where the route reads the body; FastAPI answers it (413)
                raise too_large
            return message

        await self.app(scope, counting, send)
