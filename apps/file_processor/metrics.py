"""Prometheus metrics, on a registry per worker so that several workers can live in one test process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

OUTCOMES = ("verified", "quarantined", "duplicate", "superseded")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "file_processor_messages", "Messages done and deleted, by outcome.", ["outcome"], registry=r
        )
        self.rejections = Counter(
            "file_processor_rejected_files", "Files set aside, by why the check refused them.", ["reason"], registry=r
        )
        self.failures = Counter(
            "file_processor_messages_failed", "Messages left for redelivery, by reason.", ["reason"], registry=r
        )
        self.poison = Counter(
            "file_processor_poison_messages",
            "Messages that can never be processed (left for the DLQ).",
            ["reason"],
            registry=r,
        )
        self.check_seconds = Histogram(
            "file_processor_check_seconds",
            "Duration of the PDF check (child process included).",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 20),
            registry=r,
        )
        for outcome in OUTCOMES:
            self.messages.labels(outcome=outcome)
