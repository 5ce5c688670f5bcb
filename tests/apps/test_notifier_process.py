"""``python -m notifier`` as a process: settings from the environment, health, metrics, clean SIGTERM."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from test_notifier_worker import (REGION, aws_endpoint, from_address, notifier_database,  # noqa: F401
                                  notifier_db_env, sqs)

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def sent_to(endpoint, to):
    status, body = get(f"{endpoint}/moto-api/data.json")
    return [m for m in json.loads(body)["ses"]["Message"] if to in str(m["destinations"])]


@pytest.fixture
def notifier_env(notifier_db_env, aws_endpoint, sqs, from_address):
    queue = sqs.create_queue(QueueName=f"proc-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(notifier_db_env)
    env.update({
        "PYTHONPATH": str(ROOT / "apps"),
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "NOTIFIER_AWS__REGION": REGION, "NOTIFIER_AWS__ENDPOINT_URL": aws_endpoint,
        "NOTIFIER_QUEUE_URLS": json.dumps([queue]),
        "NOTIFIER_SES__FROM_ADDRESS": from_address,
        "NOTIFIER_HTTP_PORT": str(port), "NOTIFIER_HTTP_HOST": "127.0.0.1",
        "NOTIFIER_WAIT_SECONDS": "2",
    })
    return env, queue, f"http://127.0.0.1:{port}"


def test_migrate_then_run_send_and_stop_on_sigterm(notifier_env, sqs, aws_endpoint):
    env, queue, base = notifier_env
    migrate = subprocess.run([sys.executable, "-m", "notifier.migrate"], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert migrate.returncode == 0, migrate.stderr
    process = subprocess.Popen([sys.executable, "-m", "notifier"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, 30, "/readyz")
        assert get(f"{base}/healthz")[0] == 200
        to = f"{uuid.uuid4().hex[:10]}@example.com"
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({
            "id": str(uuid.uuid4()), "type": "exam.created", "occurred_at": "2026-11-22T19:00:00Z",
            "payload": {"recipient_email": to, "recipient_name": "Pat", "exam_type": "MRI"}}))
        wait_for(lambda: len(sent_to(aws_endpoint, to)) == 1, 20, "the email in moto")
        status, metrics = get(f"{base}/metrics")
        assert status == 200
        assert 'notifier_emails_sent_total{event_type="exam.created"} 1.0' in metrics
        assert "notifier_processing_seconds_bucket" in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read()
    assert to not in output, "recipient addresses must not be logged"
    assert "stopped" in output


def test_settings_refuse_bad_values(notifier_env):
    env, _, _ = notifier_env
    env = {**env, "NOTIFIER_QUEUE_URLS": "[]"}
    result = subprocess.run([sys.executable, "-m", "notifier"], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode != 0 and "queue_urls" in result.stderr
