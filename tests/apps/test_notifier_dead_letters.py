"""The notifier's dead-letter depth gauge against a moto server: DLQs found from the queues' redrive policies, a
message SQS itself moved there, errors counted without stopping the sampler, and the gauge on the process's /metrics."""

import json
import subprocess
import sys
import threading
import uuid

import boto3
import pytest
from botocore.config import Config
from support import REGION, ROOT, get, make_queue, wait_for

from notifier.dead_letters import DeadLetterSampler, dead_letter_queue_url
from notifier.metrics import Metrics


def gauge(metrics, name):
    return metrics.registry.get_sample_value("notifier_dead_letter_messages", {"queue": name})


def errors(metrics):
    return metrics.registry.get_sample_value("notifier_dead_letter_sample_errors_total")


def test_dead_letter_url_is_the_queues_url_with_the_dlq_name():
    policy = json.dumps(
        {"deadLetterTargetArn": "arn:aws:sqs:eu-west-1:123456789012:events-account-dlq-1a2b", "maxReceiveCount": 3}
    )
    assert (
        dead_letter_queue_url("https://sqs.eu-west-1.amazonaws.com/123456789012/events-account-9f8e", policy)
        == "https://sqs.eu-west-1.amazonaws.com/123456789012/events-account-dlq-1a2b"
    )
    assert dead_letter_queue_url("https://sqs.eu-west-1.amazonaws.com/123456789012/q", None) is None
    with pytest.raises(ValueError, match="deadLetterTargetArn = 'nope' is invalid"):
        dead_letter_queue_url("https://sqs/1/q", json.dumps({"deadLetterTargetArn": "nope"}))


def test_a_message_sqs_moved_to_the_dlq_is_counted_per_dlq(sqs):
    failing = make_queue(sqs, f"dl-{uuid.uuid4().hex[:8]}", visibility=0, max_receive=1)
    healthy = make_queue(sqs, f"dl-{uuid.uuid4().hex[:8]}")
    no_dlq = sqs.create_queue(QueueName=f"dl-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=failing.url, MessageBody="{}")
    assert len(sqs.receive_message(QueueUrl=failing.url).get("Messages", [])) == 1
    # Received once already (maxReceiveCount 1): the next receive makes SQS move it to the DLQ instead.
    assert sqs.receive_message(QueueUrl=failing.url).get("Messages", []) == []

    metrics = Metrics()
    depths = DeadLetterSampler(sqs, [failing.url, healthy.url, no_dlq], metrics).sample_once()

    failing_dlq, healthy_dlq = failing.dlq_url.rsplit("/", 1)[1], healthy.dlq_url.rsplit("/", 1)[1]
    assert depths == {failing_dlq: 1, healthy_dlq: 0}, "a queue without a redrive policy has no DLQ to watch"
    assert gauge(metrics, failing_dlq) == 1 and gauge(metrics, healthy_dlq) == 0
    assert errors(metrics) == 0


def test_sqs_errors_are_counted_and_the_other_queues_still_sampled(sqs):
    healthy = make_queue(sqs, f"dl-{uuid.uuid4().hex[:8]}")
    sqs.send_message(QueueUrl=healthy.dlq_url, MessageBody="{}")
    missing = healthy.url.rsplit("/", 1)[0] + "/no-such-queue"
    metrics = Metrics()
    depths = DeadLetterSampler(sqs, [missing, healthy.url], metrics).sample_once()
    assert depths == {healthy.dlq_url.rsplit("/", 1)[1]: 1}
    assert errors(metrics) == 1


def test_the_sampler_thread_survives_an_unreachable_sqs():
    unreachable = boto3.client(
        "sqs",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    metrics = Metrics()
    stop = threading.Event()
    thread = DeadLetterSampler(unreachable, ["http://127.0.0.1:9/123456789012/q"], metrics, interval=0.05).start(stop)
    try:
        wait_for(lambda: (errors(metrics) or 0) >= 3, 20, "three failed samples")
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive(), "the sampler stops with the notifier's stop event"


def test_the_running_notifier_exports_its_dlq_depth(notifier_env, sqs):
    env, _, base = notifier_env
    queue = make_queue(sqs, f"dl-proc-{uuid.uuid4().hex[:8]}")
    sqs.send_message(QueueUrl=queue.dlq_url, MessageBody="{}")
    sqs.send_message(QueueUrl=queue.dlq_url, MessageBody="{}")
    env = {**env, "NOTIFIER_QUEUE_URLS": json.dumps([queue.url])}
    migrate = subprocess.run(
        [sys.executable, "-m", "notifier.migrate"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert migrate.returncode == 0, migrate.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "notifier"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    line = f'notifier_dead_letter_messages{{queue="{queue.dlq_url.rsplit("/", 1)[1]}"}} 2.0'
    try:
        wait_for(lambda: line in get(f"{base}/metrics")[1], 30, line)
    finally:
        process.terminate()
        process.wait(timeout=30)
