from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from clinic_api.deps import BreakerDep, EngineDep
from clinic_api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up (no dependency checked: a database outage must not restart every pod). On the event loop,
    not the thread pool: with every worker thread waiting on a slow database, liveness must still answer."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(engine: EngineDep, breaker: BreakerDep):
    """Ready only when the database answers; asked of the database itself, even while requests fail fast."""
    try:
        with breaker.bypassed(), engine.connect() as connection:
            connection.execute(text("SET LOCAL statement_timeout = 2000"))
            connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means not ready
        return JSONResponse({"status": "database unavailable"}, status_code=503)
    return Health(status="ready")


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
