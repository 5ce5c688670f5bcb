"""Depth of the notifier's dead-letter queues, sampled from SQS for the ``notifier_dead_letter_messages`` gauge.

Each queue's DLQ is found from its own RedrivePolicy, so the notifier needs no setting that could drift from the
queues: SQS requires a DLQ in the queue's account and region, so its URL is the queue's with the DLQ's name.
Sampling runs in its own thread and never raises: an SQS error is logged and counted, the last value is kept.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .metrics import Metrics
from .retry import error_code

log = logging.getLogger("notifier.dead_letters")

SAMPLE_INTERVAL_SECONDS = 60.0
"""SQS updates ApproximateNumberOfMessages about once a minute; sampling faster would show nothing new."""


def dead_letter_queue_url(queue_url: str, redrive_policy: str | None) -> str | None:
    """The DLQ's URL from a queue's URL and its RedrivePolicy attribute; None when the queue has no DLQ."""
    if not redrive_policy:
        return None
    target = json.loads(redrive_policy).get("deadLetterTargetArn", "")
    name = target.rsplit(":", 1)[-1]
    if not target.startswith("arn:") or not name:
        raise ValueError(f"RedrivePolicy deadLetterTargetArn = {target!r} is invalid; allowed: an SQS queue ARN")
    return f"{queue_url.rsplit('/', 1)[0]}/{name}"


class DeadLetterSampler:
    def __init__(
        self, sqs: Any, queue_urls: Sequence[str], metrics: Metrics, interval: float = SAMPLE_INTERVAL_SECONDS
    ):
        self.sqs = sqs
        self.queue_urls = list(queue_urls)
        self.metrics = metrics
        self.interval = interval

    def sample_once(self) -> dict[str, int]:
        """Sets the gauge for every DLQ it could read; returns {DLQ name: depth} of those."""
        depths: dict[str, int] = {}
        for queue_url in self.queue_urls:
            try:
                attributes = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
                dlq_url = dead_letter_queue_url(queue_url, attributes.get("Attributes", {}).get("RedrivePolicy"))
                if dlq_url is None:
                    continue
                depth = int(
                    self.sqs.get_queue_attributes(
                        QueueUrl=dlq_url,
                        AttributeNames=["ApproximateNumberOfMessages"],
                    )["Attributes"]["ApproximateNumberOfMessages"]
                )
            except (BotoCoreError, ClientError, ValueError, KeyError) as exc:
                self.metrics.dead_letter_sample_errors.inc()
                log.warning(
                    "could not sample a dead-letter queue", extra={"queue_url": queue_url, "error": error_code(exc)}
                )
                continue
            name = dlq_url.rsplit("/", 1)[-1]
            self.metrics.dead_letters.labels(queue=name).set(depth)
            depths[name] = depth
        return depths

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.sample_once()
            except Exception:  # noqa: BLE001 - a bug here must not end the thread the gauge depends on
                self.metrics.dead_letter_sample_errors.inc()
                log.exception("dead-letter sampling failed")
            stop.wait(self.interval)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="dead-letter-sampler", daemon=True)
        thread.start()
        return thread
