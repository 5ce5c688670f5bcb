"""The notifier against a real PostgreSQL and a moto server: sending, idempotency, poison messages, retries."""

import json
import threading
import time
import urllib.error
import urllib.request
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError
from support import FROM_ADDRESS, REGION, make_queue, sent_emails, wait_for

from notifier.metrics import Metrics
from notifier.store import SentEventStore
from notifier.worker import Notifier


def queue_depth(sqs, url):
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


PAYLOADS = {
    "account.created": {},
    "appointment.confirmed": {
        "starts_at": "2026-11-24T14:30:00Z",
        "doctor_name": "Dr. Ana Souza",
        "telemedicine_url": "https://meet.clinic.example/r/abc",
    },
    "appointment.cancelled": {"starts_at": "2026-11-24T14:30:00Z", "doctor_name": "Dr. Ana Souza"},
    "exam.created": {"exam_type": "Blood count"},
    "exam.completed": {"exam_type": "Blood count"},
    "exam.result.ready": {"exam_type": "Blood count"},
}


def event_body(event_type, to="patient@example.com", event_id=None):
    return json.dumps(
        {
            "id": event_id or str(uuid.uuid4()),
            "type": event_type,
            "occurred_at": "2026-11-22T19:00:00Z",
            "payload": {"recipient_email": to, "recipient_name": "Pat", **PAYLOADS[event_type]},
        }
    )


@pytest.fixture
def ses(aws_endpoint):
    return boto3.client("sesv2", endpoint_url=aws_endpoint, region_name=REGION)


@pytest.fixture
def store(notifier_engine):
    s = SentEventStore(notifier_engine)
    s.create_table()
    return s


@pytest.fixture
def queue(sqs, kms_key):
    """Encrypted with a customer key, as the platform's queues are."""
    return make_queue(sqs, f"t-{uuid.uuid4().hex[:8]}", visibility=30, kms_key=kms_key)


def make_notifier(sqs, ses, store, queues, **kw):
    kw.setdefault("wait_seconds", 1)
    return Notifier(
        sqs=sqs,
        ses=ses,
        store=store,
        queue_urls=queues,
        from_address=FROM_ADDRESS,
        configuration_set="clinic-test",
        metrics=Metrics(),
        **kw,
    )


def drain(notifier, queue_url, rounds=3):
    """Receive and process up to ``rounds`` batches, stopping at the first empty receive."""
    reports = []
    for _ in range(rounds):
        messages = notifier.receive(queue_url)
        if not messages:
            break
        reports.append(notifier.process_batch(queue_url, messages))
    return reports


def test_one_email_per_event_through_ses_v2(sqs, ses, store, queue, aws_endpoint, kms_key):
    attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["KmsMasterKeyId"])["Attributes"]
    assert attributes["KmsMasterKeyId"] == kms_key, "received from a queue on a customer key"
    recipients = {
        t: f"{uuid.uuid4().hex[:10]}@example.com"
        for t in ("account.created", "appointment.confirmed", "exam.created", "exam.result.ready")
    }
    for event_type, to in recipients.items():
        sqs.send_message(
            QueueUrl=queue.url,
            MessageBody=event_body(event_type, to=to),
            MessageAttributes={"event_type": {"DataType": "String", "StringValue": event_type}},
        )
    notifier = make_notifier(sqs, ses, store, [queue.url])
    drain(notifier, queue.url)
    for event_type, to in recipients.items():
        emails = sent_emails(aws_endpoint, to)
        assert len(emails) == 1, f"{event_type}: {len(emails)} emails to {to}"
        assert emails[0]["source"] == FROM_ADDRESS
    assert "Tuesday 24 November 2026" in sent_emails(aws_endpoint, recipients["appointment.confirmed"])[0]["subject"]
    assert queue_depth(sqs, queue.url) == 0
    assert notifier.metrics.emails_sent.labels(event_type="exam.result.ready")._value.get() == 1


def test_the_same_event_twice_is_sent_once(sqs, ses, store, queue, aws_endpoint):
    to = f"{uuid.uuid4().hex[:10]}@example.com"
    body = event_body("exam.result.ready", to=to)
    sqs.send_message(QueueUrl=queue.url, MessageBody=body)
    sqs.send_message(QueueUrl=queue.url, MessageBody=body)  # a duplicate in the same batch
    notifier = make_notifier(sqs, ses, store, [queue.url])
    drain(notifier, queue.url)
    sqs.send_message(QueueUrl=queue.url, MessageBody=body)  # and one arriving after it was sent
    # A second worker (another pod) shares only the database.
    drain(make_notifier(sqs, ses, store, [queue.url]), queue.url)
    assert len(sent_emails(aws_endpoint, to)) == 1
    assert queue_depth(sqs, queue.url) == 0, "duplicates must be deleted"


def test_poison_message_reaches_the_dlq_after_3_receives_and_the_loop_keeps_running(
    sqs, ses, store, aws_endpoint, kms_key
):
    queue = make_queue(sqs, f"poison-{uuid.uuid4().hex[:8]}", visibility=1, kms_key=kms_key)
    notifier = make_notifier(sqs, ses, store, [queue.url])
    stop = threading.Event()
    notifier.start(stop)
    try:
        sqs.send_message(QueueUrl=queue.url, MessageBody="{not json")
        sqs.send_message(
            QueueUrl=queue.url,
            MessageBody=json.dumps(
                {"id": str(uuid.uuid4()), "type": "exam.exploded", "occurred_at": "2026-01-01T00:00:00Z", "payload": {}}
            ),
        )
        wait_for(lambda: queue_depth(sqs, queue.dlq_url) == 2, 20, "poison messages in the DLQ")
        assert notifier.alive(), "a poison message stopped the loop"
        to = f"{uuid.uuid4().hex[:10]}@example.com"
        sqs.send_message(QueueUrl=queue.url, MessageBody=event_body("exam.created", to=to))
        wait_for(lambda: len(sent_emails(aws_endpoint, to)) == 1, 10, "email after the poison messages")
    finally:
        stop.set()
        notifier.join(10)
    poison = notifier.metrics.poison
    assert poison.labels(reason="invalid_json")._value.get() == 3  # received 3 times, never deleted
    assert poison.labels(reason="unknown_type")._value.get() == 3
    assert not notifier.alive()


class FlakySes:
    """The real (moto) SES client, failing the first ``failures`` calls with ``code``."""

    def __init__(self, ses, failures, code="TooManyRequestsException", status=429):
        self.ses, self.failures, self.calls = ses, failures, 0
        self.error = ClientError(
            {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": status}},
            "SendEmail",
        )

    def send_email(self, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.ses.send_email(**kwargs)


def test_transient_ses_failure_is_retried_with_backoff_then_sent(sqs, ses, store, queue, aws_endpoint):
    to = f"{uuid.uuid4().hex[:10]}@example.com"
    sqs.send_message(QueueUrl=queue.url, MessageBody=event_body("appointment.cancelled", to=to))
    sleeps = []
    flaky = FlakySes(ses, failures=2)
    notifier = make_notifier(sqs, flaky, store, [queue.url], sleep=sleeps.append)
    (report,) = drain(notifier, queue.url, rounds=1)
    assert flaky.calls == 3 and sleeps == [1.0, 2.0]
    assert len(report.sent) == 1 and len(sent_emails(aws_endpoint, to)) == 1
    assert queue_depth(sqs, queue.url) == 0


def test_exhausted_retries_release_the_claim_and_leave_the_message_for_redelivery(sqs, ses, store, aws_endpoint):
    queue = make_queue(sqs, f"retry-{uuid.uuid4().hex[:8]}", visibility=1)
    to = f"{uuid.uuid4().hex[:10]}@example.com"
    sqs.send_message(QueueUrl=queue.url, MessageBody=event_body("exam.completed", to=to))
    flaky = FlakySes(ses, failures=3, code="ServiceUnavailable", status=503)
    notifier = make_notifier(sqs, flaky, store, [queue.url], sleep=lambda s: None)
    (report,) = drain(notifier, queue.url, rounds=1)
    assert list(report.failed.values()) == ["ses_transient"] and not report.deleted
    assert sent_emails(aws_endpoint, to) == []
    # Redelivered after the visibility timeout; the released claim lets it be sent now.
    wait_for(lambda: bool(drain(notifier, queue.url, rounds=1)), 10, "redelivery")
    assert len(sent_emails(aws_endpoint, to)) == 1
    assert queue_depth(sqs, queue.url) == 0


def test_rejected_email_is_not_retried_and_goes_to_the_dlq(sqs, ses, store, aws_endpoint):
    queue = make_queue(sqs, f"rejected-{uuid.uuid4().hex[:8]}", visibility=1)
    sqs.send_message(QueueUrl=queue.url, MessageBody=event_body("exam.created"))
    flaky = FlakySes(ses, failures=100, code="MessageRejected", status=400)
    notifier = make_notifier(sqs, flaky, store, [queue.url])
    stop = threading.Event()
    notifier.start(stop)
    try:
        wait_for(lambda: queue_depth(sqs, queue.dlq_url) == 1, 20, "rejected message in the DLQ")
    finally:
        stop.set()
        notifier.join(10)
    assert flaky.calls == 3, "one call per receive: permanent errors are not retried"
    assert notifier.metrics.messages_failed.labels(reason="ses_rejected")._value.get() == 3


def test_a_crashed_workers_claim_is_taken_over_after_the_lease(sqs, ses, notifier_engine, aws_endpoint):
    queue = make_queue(sqs, f"lease-{uuid.uuid4().hex[:8]}", visibility=1)
    to = f"{uuid.uuid4().hex[:10]}@example.com"
    body = event_body("exam.result.ready", to=to)
    event_id = json.loads(body)["id"]
    store = SentEventStore(notifier_engine, claim_lease_seconds=2)
    store.create_table()
    assert store.claim([(event_id, "exam.result.ready")]).claimed == {event_id}  # then the worker "dies"
    sqs.send_message(QueueUrl=queue.url, MessageBody=body)
    notifier = make_notifier(sqs, ses, store, [queue.url])
    (report,) = drain(notifier, queue.url, rounds=1)
    assert list(report.failed.values()) == ["in_progress"] and sent_emails(aws_endpoint, to) == []
    time.sleep(2.1)
    wait_for(lambda: any(r.sent for r in drain(notifier, queue.url, rounds=1)), 10, "takeover")
    assert len(sent_emails(aws_endpoint, to)) == 1


def test_database_down_leaves_messages_and_nothing_is_sent(sqs, ses, queue, aws_endpoint):
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    dead = SentEventStore(create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"))
    to = f"{uuid.uuid4().hex[:10]}@example.com"
    sqs.send_message(QueueUrl=queue.url, MessageBody=event_body("exam.created", to=to))
    notifier = make_notifier(sqs, ses, dead, [queue.url])
    with pytest.raises(OperationalError):
        drain(notifier, queue.url, rounds=1)
    assert sent_emails(aws_endpoint, to) == []
    assert notifier.metrics.messages_failed.labels(reason="database")._value.get() == 1


def test_health_server_reports_database_and_pollers(sqs, ses, store, queue):
    from sqlalchemy import create_engine

    from clinic_common.health import make_server, serve_in_background

    def get(base, path):
        try:
            with urllib.request.urlopen(base + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    dead = SentEventStore(create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"))
    for backing, ready in ((store, 200), (dead, 503)):
        notifier = make_notifier(sqs, ses, backing, [queue.url])
        server = make_server(
            alive=notifier.alive, ping=notifier.store.ping, registry=notifier.metrics.registry, host="127.0.0.1", port=0
        )
        serve_in_background(server)
        base = f"http://127.0.0.1:{server.server_address[1]}"
        stop = threading.Event()
        try:
            assert get(base, "/healthz")[0] == 503, "no poller running yet"
            notifier.start(stop)
            assert get(base, "/healthz")[0] == 200
            assert get(base, "/readyz")[0] == ready
            status, text = get(base, "/metrics")
            assert status == 200 and "notifier_duplicates_total" in text
            assert get(base, "/nope")[0] == 404
        finally:
            stop.set()
            notifier.join(10)
            server.shutdown()
            server.server_close()


def test_stop_finishes_the_batch_in_hand(sqs, ses, store, queue, aws_endpoint):
    sending = threading.Event()

    class SlowSes:
        def send_email(self, **kwargs):
            sending.set()
            time.sleep(1.0)  # the stop request arrives while this batch is being sent
            return ses.send_email(**kwargs)

    to = f"{uuid.uuid4().hex[:10]}@example.com"
    notifier = make_notifier(sqs, SlowSes(), store, [queue.url])
    stop = threading.Event()
    notifier.start(stop)
    sqs.send_message(QueueUrl=queue.url, MessageBody=event_body("exam.result.ready", to=to))
    assert sending.wait(10), "the message was never picked up"
    stop.set()
    notifier.join(15)
    assert not notifier.alive()
    assert len(sent_emails(aws_endpoint, to)) == 1
    assert queue_depth(sqs, queue.url) == 0, "the sent message must be deleted before the worker stops"


def test_without_its_table_the_notifier_is_not_ready_and_stops_receiving_until_migrated(
    postgres, sqs, ses, aws_endpoint
):
    from sqlalchemy import create_engine

    from clinic_common.health import make_server, serve_in_background

    database = postgres.create_database()
    engine = create_engine(f"postgresql+psycopg://postgres@/{database}?host={postgres.host}&port={postgres.port}")
    store = SentEventStore(engine)
    queue = make_queue(sqs, f"unmigrated-{uuid.uuid4().hex[:8]}", visibility=1)
    to = f"{uuid.uuid4().hex[:10]}@example.com"
    sqs.send_message(QueueUrl=queue.url, MessageBody=event_body("exam.created", to=to))
    notifier = make_notifier(sqs, ses, store, [queue.url])
    server = make_server(
        alive=notifier.alive, ping=notifier.store.ping, registry=notifier.metrics.registry, host="127.0.0.1", port=0
    )
    serve_in_background(server)
    stop = threading.Event()
    notifier.start(stop)
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/readyz", timeout=5)
        assert info.value.code == 503
        time.sleep(4)  # several visibility timeouts: a receiving poller would have pushed it to the DLQ
        assert sent_emails(aws_endpoint, to) == [] and queue_depth(sqs, queue.dlq_url) == 0
        store.create_table()
        wait_for(lambda: len(sent_emails(aws_endpoint, to)) == 1, 40, "the email once migrated")
    finally:
        stop.set()
        notifier.join(10)
        server.shutdown()
        server.server_close()
        engine.dispose()
