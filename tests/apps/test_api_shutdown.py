"""The API under uvicorn, as the image runs it, on SIGTERM: stops accepting, finishes what is in flight, and cuts
what outlives UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN instead of waiting for the kubelet's SIGKILL."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from api_support import PASSWORD, settings_for
from sqlalchemy.orm import Session
from support import free_port

from clinic_api.db import make_engine
from clinic_api.migrate import upgrade
from clinic_api.models import User, now
from clinic_api.security import hash_password

ROOT = Path(__file__).resolve().parents[2]
GRACE_SECONDS = 3
PDF = b"%PDF-1.7\n" + b"0" * 4000 + b"\n%%EOF\n"


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def api_env(postgres, clinic_aws) -> dict[str, str]:
    """The API's environment on a fresh, migrated database with a staff user and a patient (its id in
    TEST_PATIENT_ID)."""
    database = postgres.create_database()
    engine = make_engine(settings_for(postgres, clinic_aws, database))
    upgrade(engine)
    with Session(engine) as session:
        session.add(
            User(
                email="staff@example.org",
                full_name="Sam",
                role="staff",
                password_hash=hash_password(PASSWORD),
                email_verified_at=now(),
            )
        )
        patient = User(email="pat@example.org", full_name="Pat", role="patient", email_verified_at=now())
        session.add(patient)
        session.commit()
        patient_id = patient.id
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLINIC_", "UVICORN_"))}
    return {
        **env,
        "PYTHONPATH": str(ROOT / "apps"),
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "CLINIC_DATABASE__HOST": postgres.host,
        "CLINIC_DATABASE__PORT": str(postgres.port),
        "CLINIC_DATABASE__NAME": database,
        "CLINIC_DATABASE__USER": "postgres",
        "CLINIC_DATABASE__SSLMODE": "disable",
        "CLINIC_AWS__REGION": "us-east-1",
        "CLINIC_AWS__ENDPOINT_URL": clinic_aws.endpoint,
        "CLINIC_STORAGE__BUCKET": clinic_aws.bucket,
        "CLINIC_QUEUES__ACCOUNT": clinic_aws.queue_urls["account"],
        "TEST_PATIENT_ID": str(patient_id),
    }


@pytest.fixture
def api(api_env):
    """uvicorn with the image's flags and a short graceful-shutdown timeout."""
    port = free_port()
    env = {**api_env, "CLINIC_OUTBOX__RELAY_ENABLED": "false", "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN": str(GRACE_SECONDS)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "clinic_api.main:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--proxy-headers",
            "--no-access-log",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not accepts(port) or httpx.get(f"{base}/readyz").status_code != 200:
            assert process.poll() is None and time.monotonic() < deadline, "the API did not become ready"
            time.sleep(0.2)
        yield process, port, base
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def start_upload(port: int, exam_id: int, token: str) -> socket.socket:
    """An upload whose client has sent the headers and half of the PDF: a request in flight, as a slow link makes."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=15)
    connection.sendall(
        f"PUT /exams/{exam_id}/result HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/pdf\r\nContent-Length: {len(PDF)}\r\n\r\n".encode()
        + PDF[: len(PDF) // 2]
    )
    return connection


def response_of(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def test_sigterm_finishes_the_request_in_flight_refuses_new_ones_and_cuts_the_rest_at_the_timeout(api, api_env):
    process, port, base = api
    token = httpx.post(f"{base}/auth/login", json={"email": "staff@example.org", "password": PASSWORD}).json()[
        "access_token"
    ]
    headers = {"Authorization": f"Bearer {token}"}
    patient = int(api_env["TEST_PATIENT_ID"])
    finishing, stalled = (
        httpx.post(f"{base}/exams", headers=headers, json={"patient_id": patient, "exam_type": t}).json()["id"]
        for t in ("MRI", "CT")
    )
    in_flight, never_finishes = start_upload(port, finishing, token), start_upload(port, stalled, token)
    time.sleep(0.5)  # both requests are in the handler, reading their bodies

    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    while accepts(port):  # readiness probes and new clients are refused at once
        assert time.monotonic() - signalled < 2, "still accepting connections 2 s after SIGTERM"
        time.sleep(0.05)
    in_flight.sendall(PDF[len(PDF) // 2 :])
    reply = response_of(in_flight)
    assert reply.startswith(b"HTTP/1.1 200") and b'"status":"uploaded"' in reply, reply[:300]
    assert b"connection: close" in reply.lower(), "a draining server tells the client not to reuse the connection"

    # After its graceful shutdown uvicorn re-raises the signal it caught: the exit status a supervisor expects from
    # SIGTERM (143 in a container), reached only once the drain is over.
    assert process.wait(timeout=GRACE_SECONDS + 10) == -signal.SIGTERM
    stopped_after = time.monotonic() - signalled
    assert GRACE_SECONDS - 0.5 <= stopped_after < GRACE_SECONDS + 5, (
        f"stopped {stopped_after:.1f} s after SIGTERM; the stalled upload should hold it for ~{GRACE_SECONDS} s"
    )
    # At the timeout uvicorn cancels the handler; whether its own 500 reaches the client before it closes the socket
    # is a race inside uvicorn. Either way the upload is not accepted and the client knows it failed.
    cut = response_of(never_finishes)
    assert cut == b"" or cut.startswith(b"HTTP/1.1 500"), f"the request that outlived the timeout was answered: {cut!r}"
    output = process.stdout.read()
    assert "timeout graceful shutdown exceeded" in output, output[-2000:]


def test_the_standalone_outbox_relay_stops_cleanly_on_sigterm(api_env, clinic_aws):
    process = subprocess.Popen(
        [sys.executable, "-m", "clinic_api.outbox"],
        env=api_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(3)  # running: a pass or two over the empty outbox
        assert process.poll() is None, process.stdout.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert "outbox relay pass failed" not in process.stdout.read()
