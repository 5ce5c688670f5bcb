"""``python -m notifier`` as a process: settings from the environment, health, metrics, clean SIGTERM."""

import http.client
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from sqlalchemy import text
from support import ROOT, get, wait_for


def sent_to(endpoint, to):
    status, body = get(f"{endpoint}/moto-api/data.json")
    return [m for m in json.loads(body)["ses"]["Message"] if to in str(m["destinations"])]


def test_migrate_then_run_send_and_stop_on_sigterm(notifier_env, sqs, aws_endpoint):
    env, queue, base = notifier_env
    migrate = subprocess.run(
        [sys.executable, "-m", "notifier.migrate"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert migrate.returncode == 0, migrate.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "notifier"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, 30, "/readyz")
        assert get(f"{base}/healthz")[0] == 200
        to = f"{uuid.uuid4().hex[:10]}@example.com"
        sqs.send_message(
            QueueUrl=queue,
            MessageBody=json.dumps(
                {
                    "id": str(uuid.uuid4()),
                    "type": "exam.created",
                    "occurred_at": "2026-11-22T19:00:00Z",
                    "payload": {"recipient_email": to, "recipient_name": "Pat", "exam_type": "MRI"},
                }
            ),
        )
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
    result = subprocess.run(
        [sys.executable, "-m", "notifier"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0 and "queue_urls is empty; allowed: one or more SQS queue URLs" in result.stderr


class SlowSes:
    """A proxy to moto that holds every SES send for `delay` seconds, as a slow SES would: the notifier's batch stays
    in hand long enough for a SIGTERM to land in the middle of it. Everything else passes straight through."""

    def __init__(self, target: str, delay: float):
        self.sending = threading.Event()
        target_host, proxy = urlsplit(target).netloc, self

        class Forward(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming); SQS and SES v2 calls are all POSTs
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.startswith("/v2/email/outbound-emails"):
                    proxy.sending.set()
                    time.sleep(delay)
                upstream = http.client.HTTPConnection(target_host, timeout=60)
                upstream.request("POST", self.path, body, dict(self.headers))
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_sigterm_in_the_middle_of_a_batch_sends_and_deletes_it_all_once_and_leaves_the_rest_queued(
    notifier_env, sqs, aws_endpoint, notifier_engine
):
    env, queue, base = notifier_env
    subprocess.run(
        [sys.executable, "-m", "notifier.migrate"], env=env, cwd=ROOT, check=True, capture_output=True, timeout=60
    )
    ses = SlowSes(aws_endpoint, delay=2.0)
    env = {**env, "NOTIFIER_AWS__ENDPOINT_URL": ses.url, "NOTIFIER_SHUTDOWN_TIMEOUT_SECONDS": "12"}
    recipients = [f"{uuid.uuid4().hex[:10]}@example.com" for _ in range(15)]
    events = [str(uuid.uuid4()) for _ in recipients]
    for event_id, to in zip(events, recipients):
        sqs.send_message(
            QueueUrl=queue,
            MessageBody=json.dumps(
                {
                    "id": event_id,
                    "type": "exam.created",
                    "occurred_at": "2026-11-22T19:00:00Z",
                    "payload": {"recipient_email": to, "recipient_name": "Pat", "exam_type": "MRI"},
                }
            ),
        )
    process = subprocess.Popen(
        [sys.executable, "-m", "notifier"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert ses.sending.wait(30), "the notifier never reached SES"
        process.send_signal(signal.SIGTERM)  # a batch is in hand: its emails are being sent
        signalled = time.monotonic()
        assert process.wait(timeout=20) == 0
        stopped_after = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
        ses.server.shutdown()
    output = process.stdout.read()
    assert stopped_after < 12, f"exited {stopped_after:.1f} s after SIGTERM, past NOTIFIER_SHUTDOWN_TIMEOUT_SECONDS"

    emails = {to: len(sent_to(aws_endpoint, to)) for to in recipients}
    sent = [to for to, count in emails.items() if count]
    assert sent and set(emails.values()) <= {0, 1}, f"an email sent twice: {emails}"
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0, (
        "a received message was neither deleted nor given back: it would wait out the visibility timeout"
    )
    assert int(attrs["ApproximateNumberOfMessages"]) == len(recipients) - len(sent), (
        "every message not sent is still queued, none deleted unsent"
    )
    with notifier_engine.connect() as connection:
        rows = dict(
            connection.execute(
                text(
                    "SELECT CAST(event_id AS text), status FROM notifier_sent_events "
                    "WHERE event_id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"ids": events},
            ).all()
        )
    assert sorted(rows.values()) == ["sent"] * len(sent), "each email sent is recorded, so a copy is never resent"
    assert "stopping: finishing the batch in hand" in output and "notifier stopped" in output


def test_a_batch_stuck_in_ses_does_not_hold_the_process_past_the_shutdown_timeout(notifier_env, sqs, aws_endpoint):
    env, queue, _ = notifier_env
    subprocess.run(
        [sys.executable, "-m", "notifier.migrate"], env=env, cwd=ROOT, check=True, capture_output=True, timeout=60
    )
    ses = SlowSes(aws_endpoint, delay=60.0)
    env = {
        **env,
        "NOTIFIER_AWS__ENDPOINT_URL": ses.url,
        "NOTIFIER_WAIT_SECONDS": "0",
        "NOTIFIER_SHUTDOWN_TIMEOUT_SECONDS": "10",
    }
    sqs.send_message(
        QueueUrl=queue,
        MessageBody=json.dumps(
            {
                "id": str(uuid.uuid4()),
                "type": "exam.created",
                "occurred_at": "2026-11-22T19:00:00Z",
                "payload": {
                    "recipient_email": f"{uuid.uuid4().hex[:10]}@example.com",
                    "recipient_name": "Pat",
                    "exam_type": "MRI",
                },
            }
        ),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "notifier"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert ses.sending.wait(30), "the notifier never reached SES"
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert process.wait(timeout=30) == 1, "cut short: not a clean exit"
        stopped_after = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
        ses.server.shutdown()
    assert 9.5 <= stopped_after < 12, f"exited {stopped_after:.1f} s after SIGTERM, not at the 10 s timeout"
    assert "shutdown timeout passed with a batch unfinished" in process.stdout.read()
