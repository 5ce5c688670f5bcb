"""Plain helpers shared by the app tests (fixtures live in conftest.py; the API's client helpers in api_support.py)."""

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from notifier.metrics import Metrics
from notifier.store import SentEventStore
from notifier.worker import Notifier

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"  # the region of the shared moto server (conftest.py)
FROM_ADDRESS = "no-reply@clinic.test"  # verified in SES by the `aws_endpoint` fixture
NOTIFIER_DOMAINS = ("account", "appointment", "exam", "exam-result")  # the queues the notifier consumes


class Queue:
    def __init__(self, url, dlq_url):
        self.url, self.dlq_url = url, dlq_url


def make_queue(sqs, name, visibility=30, max_receive=3, kms_key=None):
    """A queue and its DLQ; with `kms_key`, both encrypted with it as the platform's are."""
    encryption = {"KmsMasterKeyId": kms_key} if kms_key else {}
    dlq = sqs.create_queue(QueueName=f"{name}-dlq", Attributes=encryption)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": max_receive}),
            **encryption,
        },
    )["QueueUrl"]
    return Queue(url, dlq)


def sent_emails(endpoint, to):
    """Emails moto's SES accepted for ``to``."""
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=10) as response:
        messages = json.load(response)["ses"]["Message"]
    return [m for m in messages if to in str(m["destinations"])]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


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


@contextmanager
def running_notifier(postgres: Any, aws: Any) -> Iterator[Notifier]:
    """The notifier as deployed, on a database of its own, consuming the queues of `aws` (a ClinicAws) until the
    block ends."""
    database = postgres.create_database()
    engine = create_engine(f"postgresql+psycopg://postgres@/{database}?host={postgres.host}&port={postgres.port}")
    store = SentEventStore(engine)
    store.create_table()
    worker = Notifier(
        sqs=aws.client("sqs"),
        ses=aws.client("sesv2"),
        store=store,
        queue_urls=[aws.queue_urls[d] for d in NOTIFIER_DOMAINS],
        from_address=aws.from_address,
        wait_seconds=1,
        metrics=Metrics(),
    )
    stop = threading.Event()
    worker.start(stop)
    try:
        yield worker
    finally:
        stop.set()
        worker.join(15)
        engine.dispose()
