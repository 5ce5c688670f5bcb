"""Liveness, readiness against the real database, metrics, request ids."""

from __future__ import annotations

import pytest
from api_support import running_clinic


@pytest.fixture
def clinic(restartable_postgres, clinic_aws):
    with running_clinic(restartable_postgres, clinic_aws) as clinic:
        yield clinic


def test_readyz_is_503_while_postgres_is_stopped_and_200_after_it_is_back(clinic, restartable_postgres):
    assert clinic.client.get("/readyz").status_code == 200
    restartable_postgres.stop()
    try:
        response = clinic.client.get("/readyz")
        assert response.status_code == 503 and response.json()["status"] == "database unavailable"
        assert clinic.client.get("/healthz").status_code == 200, "liveness does not depend on the database"
    finally:
        restartable_postgres.start()
    assert clinic.client.get("/readyz").status_code == 200


def test_metrics_and_request_ids(clinic):
    response = clinic.client.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert response.headers["X-Request-ID"] == "abc123"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    metrics = clinic.client.get("/metrics").text
    assert 'clinic_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics
    for name in ("clinic_outbox_pending", "clinic_exams_ready_total", "clinic_result_downloads_total"):
        assert name in metrics
    assert clinic.client.get("/openapi.json").json()["info"]["title"] == "clinic-api"


def test_the_first_requests_after_a_database_restart_succeed(clinic, restartable_postgres, monkeypatch):
    """Both pools hold connections the restart killed: the engine pings each checkout (pool_pre_ping), the hot pool
    runs the statement again on a fresh connection, so no request sees them."""
    import clinic_common.database as database

    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 3600.0)  # a hot pool: no idle ping saves the request
    patient = clinic.user("patient")
    assert clinic.client.get("/exams", headers=patient["headers"]).status_code == 200
    restartable_postgres.stop()
    restartable_postgres.start()
    assert clinic.client.get("/exams", headers=patient["headers"]).status_code == 200, "the hot pool's stale connection"
    assert clinic.client.get("/me", headers=patient["headers"]).status_code == 200, "the engine's stale connection"


def test_an_unhandled_error_is_a_500_with_the_request_id_and_the_security_headers(clinic, monkeypatch):
    from clinic_api.routes import exams

    patient = clinic.user("patient")
    monkeypatch.setitem(exams.LIST_EXAMS, "patient", None)  # a bug: the route calls a method of None
    failed = clinic.client.get("/exams", headers=patient["headers"])
    assert failed.status_code == 500 and failed.json()["detail"] == "internal error"
    assert failed.headers["X-Request-ID"] == failed.json()["request_id"]
    assert "Strict-Transport-Security" in failed.headers, "the 500 carries the security headers too"


def test_liveness_answers_while_every_worker_thread_is_taken(clinic):
    """Sync endpoints wait for a worker thread; with all of them stuck on a slow database, a liveness probe that
    waited too would get the pod restarted for nothing."""
    import asyncio
    import threading

    import anyio
    import httpx

    async def scenario() -> None:
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = 1
        stuck = threading.Event()

        async def block_the_worker_thread() -> None:
            await anyio.to_thread.run_sync(stuck.wait)  # the only worker thread, stuck

        transport = httpx.ASGITransport(app=clinic.app)
        async with (
            anyio.create_task_group() as tasks,
            httpx.AsyncClient(transport=transport, base_url="http://clinic") as client,
        ):
            tasks.start_soon(block_the_worker_thread)
            while limiter.borrowed_tokens < 1:
                await anyio.sleep(0.01)
            try:
                with anyio.fail_after(2):
                    assert (await client.get("/healthz")).status_code == 200
                with anyio.move_on_after(0.5) as waited:
                    await client.get("/readyz")  # a sync endpoint: it needs the thread held above
                assert waited.cancelled_caught, "the check above would pass for any endpoint if no thread were held"
            finally:
                stuck.set()

    # A loop of its own, never installed as the thread's current loop: the Pulumi tests that run later in this
    # process need asyncio.get_event_loop() to keep working, which asyncio.run() or the anyio plugin would break.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


def test_objects_built_at_start_up_are_frozen_out_of_full_collections(clinic):
    """A full collection over the app's start-up objects (SQLAlchemy, pydantic, botocore models) paused requests for
    ~70 ms; frozen, it takes ~1.5 ms (bench/bench_api.py)."""
    import gc

    from clinic_api.db import make_engine  # built at start-up, so frozen

    assert gc.get_freeze_count() > 0 and clinic.client.get("/healthz").status_code == 200
    assert not any(obj is make_engine for obj in gc.get_objects()), "not walked by the collector"
