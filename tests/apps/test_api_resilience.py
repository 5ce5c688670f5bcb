"""Nothing blocks the event loop, a database outage answers 503 at once and ends with the first request after it, and
a failed statement's data never reaches a log."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from api_support import PASSWORD, running_clinic
from sqlalchemy import text
from support import wait_for

from clinic_api import outbox
from clinic_api.db import BREAKER_PAUSE_SECONDS
from clinic_api.main import DATABASE_UNAVAILABLE
from clinic_api.settings import QueueSettings

PDF = b"%PDF-1.7\n" + b"x" * 4096 + b"\n%%EOF\n"


def test_liveness_answers_at_once_while_a_result_upload_waits_on_s3(postgres, clinic_aws, monkeypatch):
    with running_clinic(postgres, clinic_aws) as clinic:
        staff, patient = clinic.user("staff"), clinic.user("patient")
        exam = clinic.client.post(
            "/exams", json={"patient_id": patient["id"], "exam_type": "X-ray"}, headers=staff["headers"]
        ).json()
        s3 = clinic.app.state.s3
        real_put, in_put, release = s3.put_object, threading.Event(), threading.Event()

        def slow_put(**kwargs):  # S3 taking its time: the put blocks until the test has measured
            in_put.set()
            release.wait(5)
            return real_put(**kwargs)

        monkeypatch.setattr(s3, "put_object", slow_put)
        uploaded = []
        upload = threading.Thread(
            target=lambda: uploaded.append(
                clinic.client.put(
                    f"/exams/{exam['id']}/result",
                    content=PDF,
                    headers={**staff["headers"], "Content-Type": "application/pdf"},
                )
            )
        )
        upload.start()
        try:
            assert in_put.wait(10), "the upload reached S3"
            latencies = []
            for _ in range(5):
                started = time.monotonic()
                assert clinic.client.get("/healthz").status_code == 200
                latencies.append(time.monotonic() - started)
            started = time.monotonic()
            assert clinic.client.get("/me", headers=patient["headers"]).status_code == 200, (
                "a database route answers too"
            )
            latencies.append(time.monotonic() - started)
        finally:
            release.set()
            upload.join(10)
        assert uploaded[0].status_code == 200 and uploaded[0].json()["status"] == "uploaded", uploaded[0].text
        # Blocked, the loop would answer only once the put returned: 5 s later.
        assert max(latencies) < 1.0, f"requests waited on the upload: {latencies}"


def test_while_postgres_is_down_requests_get_503_at_once_and_the_first_after_it_succeeds(
    restartable_postgres, clinic_aws
):
    # connect_timeout 5 s: a request that waited for a connection (the hot pool's wait, or connecting) would take 5 s.
    with running_clinic(restartable_postgres, clinic_aws, database={"connect_timeout": 5}) as clinic:
        patient = clinic.user("patient")
        login = {"email": patient["email"], "password": PASSWORD}
        requests = {  # the login first: the engine finds the outage, then the breaker spares the hot pool the wait
            "POST /auth/login (engine only)": lambda: clinic.client.post("/auth/login", json=login),
            "GET /me (hot pool, then engine)": lambda: clinic.client.get("/me", headers=patient["headers"]),
            "GET /exams (hot pool only)": lambda: clinic.client.get("/exams", headers=patient["headers"]),
        }
        assert {name: call().status_code for name, call in requests.items()} == dict.fromkeys(requests, 200)
        restartable_postgres.stop()
        try:
            started = time.monotonic()
            answers = [(name, call()) for _ in range(4) for name, call in requests.items()]
            elapsed = time.monotonic() - started
        finally:
            restartable_postgres.start()
        for name, response in answers:
            assert (response.status_code, response.json()["detail"]) == (503, DATABASE_UNAVAILABLE), name
            assert int(response.headers["Retry-After"]) >= 1, name
        assert elapsed < 5, f"{len(answers)} requests took {elapsed:.1f} s: they waited for the database"
        assert clinic.client.get("/readyz").status_code in (200, 503)
        time.sleep(BREAKER_PAUSE_SECONDS + 0.1)  # the breaker lets the next request try
        after = {name: call() for name, call in requests.items()}
        assert {name: r.status_code for name, r in after.items()} == dict.fromkeys(requests, 200), {
            name: r.text for name, r in after.items()
        }


@pytest.mark.parametrize(
    "breakage",
    [
        # The user's INSERT fails: its parameters are the email, the name and the argon2 hash.
        "ALTER TABLE users ALTER COLUMN role TYPE integer USING 0",
        # The event's INSERT fails a constraint: PostgreSQL's DETAIL quotes the failing row, the email in its payload.
        "ALTER TABLE outbox ADD CONSTRAINT refuse_every_event CHECK (event_type = '')",
    ],
)
def test_a_failed_statements_data_never_reaches_the_log(postgres, clinic_aws, capsys, breakage):
    """A registration whose statement fails is logged with its traceback (a 500): neither the statement's parameters
    nor PostgreSQL's DETAIL line may be in it."""
    with running_clinic(postgres, clinic_aws) as clinic:
        with clinic.app.state.engine.begin() as connection:
            connection.execute(text(breakage))
        tag = uuid.uuid4().hex[:8]
        email, name = f"leak-{tag}@example.org", f"Maria {tag}"
        capsys.readouterr()
        response = clinic.client.post("/auth/register", json={"email": email, "password": PASSWORD, "full_name": name})
        logged = capsys.readouterr().out
    assert response.status_code == 500
    records = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    failure = next(r for r in records if r["message"] == "unhandled error")
    assert "psycopg.errors." in failure["exception"], "the failure itself is logged, with its cause"
    # Values may be shortened in an exception's text: look for their beginnings too.
    for secret in (email, f"leak-{tag}", tag, "$argon2", PASSWORD):
        assert secret not in logged, f"{secret!r} reached the log"


def test_both_pools_give_up_on_unacknowledged_data_after_the_connect_timeout(postgres, clinic_aws):
    """libpq's tcp_user_timeout on every connection of both pools: a server gone without closing its connections
    fails a request in seconds rather than after TCP's ~15 minutes of retransmissions. (Dropping packets needs a
    firewall this machine does not offer, so this shows the setting on the live connections.)"""
    settings: dict[str, str] = {}
    with running_clinic(postgres, clinic_aws, database={"connect_timeout": 3}) as clinic:
        with clinic.app.state.engine.connect() as connection:
            settings["engine"] = connection.connection.dbapi_connection.info.get_parameters()["tcp_user_timeout"]

        async def hot() -> str:
            async with clinic.app.state.hot_pool.connection() as connection:
                return connection.info.get_parameters()["tcp_user_timeout"]

        settings["hot pool"] = clinic.client.portal.call(hot)  # on the app's own event loop
    assert settings == {"engine": "3000", "hot pool": "3000"}


def test_the_outbox_relay_logs_an_outage_once_then_a_line_a_while_then_its_recovery(
    restartable_postgres, clinic_aws, capsys
):
    """While the database is down, the relay (a pass every 20 ms here, every second deployed) logs the first failure
    with its traceback, then a one-line count at most every `every` seconds, and one line when a pass works again."""
    with running_clinic(restartable_postgres, clinic_aws) as clinic:
        sqs = clinic_aws.client("sqs")
        queues = QueueSettings(**{d.replace("-", "_"): url for d, url in clinic_aws.queue_urls.items()})
        relay = outbox.Relay(clinic.app.state.engine, sqs, queues, interval=0.02, batch_size=10)
        relay.outage.every = 0.5  # deployed: 60 s
        relay.start()
        try:
            restartable_postgres.stop()
            try:
                wait_for(lambda: relay.outage.failures >= 1, 10, "a failed pass")
                started = time.monotonic()
                time.sleep(1.6)  # the outage: ~80 passes at 20 ms
                failures = relay.outage.failures
            finally:
                restartable_postgres.start()
            down_for = time.monotonic() - started
            wait_for(lambda: relay.outage.failures == 0, 20, "the relay's recovery")
            # Works again: an event written now goes out (the verification email of a registration).
            clinic.client.post("/auth/register", json={"email": "after@example.org", "full_name": "After"})
            received = lambda: sqs.receive_message(QueueUrl=clinic_aws.queue_urls["account"]).get("Messages")  # noqa: E731
            wait_for(received, 10, "an event relayed after the outage")
        finally:
            relay.stop()
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    lines = [entry for entry in logged if entry["logger"] == "clinic.outbox"]
    assert failures > 20, "the relay kept trying"
    tracebacks = [entry for entry in lines if "exception" in entry]
    assert [entry["message"] for entry in tracebacks] == ["outbox relay pass failed; retrying"]
    assert "Traceback" in tracebacks[0]["exception"]
    counts = [entry for entry in lines if "still failing" in entry["message"]]
    assert 2 <= len(counts) <= down_for / 0.5 + 2, [entry["message"] for entry in counts]
    assert {entry["level"] for entry in counts} == {"warning"}
    assert [entry["failures"] for entry in counts] == sorted(entry["failures"] for entry in counts)
    recovered = lines[-1]
    assert "recovered after" in recovered["message"] and recovered["failures"] >= failures
    assert len(lines) == 2 + len(counts), [entry["message"] for entry in lines]
