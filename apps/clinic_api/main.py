"""`uvicorn --factory clinic_api.main:create_app`."""

from __future__ import annotations

import gc
import logging
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter, Histogram
from psycopg import OperationalError as PsycopgOperationalError
from sqlalchemy import exc as sa_exc
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinic_api.agendas import routes as agendas
from clinic_api.agendas.reminders import Reminders
from clinic_api.body_limit import BodyLimit
from clinic_api.db import Breaker, DatabaseUnavailable, make_engine, make_hot_pool
from clinic_api.db_metrics import DATABASE_STATS
from clinic_api.errors import document_errors
from clinic_api.outbox import Relay
from clinic_api.routes import accounts, appointments, exams, health, privacy, profiles, telemedicine
from clinic_api.settings import Settings, get_settings
from clinic_api.throttle import LoginThrottle
from clinic_api.web import errors as web_errors
from clinic_api.web import install as install_portal
from clinic_common.aws import client
from clinic_common.logging import configure_logging, request_id

log = logging.getLogger("clinic.api")
REQUESTS = Counter("clinic_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "clinic_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Cache-Control": "no-store",  # unless the response says otherwise (the portal's fingerprinted static files)
}
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
"""The portal's Content-Security-Policy: nothing inline, nothing from elsewhere (the API's JSON needs none)."""


DATABASE_UNAVAILABLE = "the database is unavailable; try again shortly"


class Observe:
    """Request id, security headers, metrics, and a JSON 500 for anything unhandled. Plain ASGI, not
    `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs the app in a task of its own behind memory streams,
    which cost every request about 0.15 ms of CPU (bench/bench_api.py)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = (Headers(scope=scope).get("x-request-id") or uuid.uuid4().hex)[:64]
        page = scope["path"] == "/" or scope["path"].startswith("/portal")
        status = 500
        responded = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = rid
                for name, value in SECURITY_HEADERS.items():
                    if name != "Cache-Control" or name not in headers:
                        headers[name] = value
                if page:
                    headers["Content-Security-Policy"] = PAGE_CSP
            await send(message)

        token = request_id.set(rid)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("unhandled error", extra={"path": scope["path"]})
            if responded:  # too late for a 500: the client sees the connection end
                raise
            if page:
                await web_errors.html_500(Request(scope, receive))(scope, receive, send_with_headers)
            else:
                await JSONResponse({"detail": "internal error", "request_id": rid}, status_code=500)(
                    scope, receive, send_with_headers
                )
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            request_id.reset(token)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("clinic-api", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await app.state.hot_pool.open(wait=False)  # connects in the background; a request waits at most the timeout
        relay = None
        if settings.outbox.relay_enabled:
            relay = Relay(
                app.state.engine,
                client("sqs", settings.aws),
                settings.queues,
                settings.outbox.interval_seconds,
                settings.outbox.batch_size,
            )
            relay.start()
        reminders = Reminders(app.state.engine, settings.agenda) if settings.agenda.reminders_enabled else None
        if reminders:
            reminders.start()
        # Everything built so far lives as long as the process. Frozen, a full collection no longer walks it: that
        # walk paused every request in flight for ~70 ms (p99 of the exam list 7 -> 60 ms; bench/bench_api.py).
        gc.freeze()
        yield
        gc.unfreeze()
        if relay:
            relay.stop()
        if reminders:
            reminders.stop()
        await app.state.hot_pool.close()
        app.state.engine.dispose()

    app = FastAPI(title="clinic-api", version="1.0", lifespan=lifespan)
    app.state.settings = settings
    breaker = Breaker()  # shared: whichever pool finds the database down spares the other's requests the wait
    app.state.engine = make_engine(settings, breaker)
    app.state.hot_pool = make_hot_pool(settings, breaker)
    DATABASE_STATS.watch(settings)
    app.state.s3 = client("s3", settings.aws, signature_version="s3v4")
    app.state.login_throttle = LoginThrottle(settings.auth)
    for module in (health, accounts, profiles, privacy, agendas, appointments, exams, telemedicine):
        document_errors(module.router)
        app.include_router(module.router)

    install_portal(app)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, upload_bytes=settings.storage.max_upload_bytes)
    app.add_middleware(Observe)  # added last: outermost, so that it sees (and counts) the 413s too

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        if web_errors.is_portal(request):
            return web_errors.error_page(request, 422)
        fields = [
            {"field": ".".join(str(p) for p in e["loc"][1:]) or "body", "problem": e["msg"]} for e in error.errors()
        ]
        return JSONResponse({"detail": "invalid request", "errors": fields}, status_code=422)

    # The database down, restarting or saturated: a 503 the client may retry, not a 500. OperationalError covers
    # connections refused or lost and statements cancelled (a timeout); TimeoutError, no pooled connection in time.
    @app.exception_handler(DatabaseUnavailable)
    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.TimeoutError)
    @app.exception_handler(PsycopgOperationalError)
    async def database_unavailable(request: Request, error: Exception) -> Response:
        log.warning("database unavailable", extra={"error": type(error).__name__})  # its text may quote SQL
        if web_errors.is_portal(request):
            return web_errors.error_page(request, 503, {"Retry-After": str(breaker.retry_after)})
        return JSONResponse(
            {"detail": DATABASE_UNAVAILABLE},
            status_code=503,
            headers={"Retry-After": str(breaker.retry_after)},
        )

    return app
