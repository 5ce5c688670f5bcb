"""Prometheus metrics, on a registry per worker so that several workers can live in one test process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .events import EVENT_TYPES


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.emails_sent = Counter(
            "notifier_emails_sent", "Emails accepted by SES, by event type.", ["event_type"], registry=r
        )
        self.messages_failed = Counter(
            "notifier_messages_failed", "Messages left for redelivery, by reason.", ["reason"], registry=r
        )
        self.duplicates = Counter("notifier_duplicates", "Messages whose event was already sent (deleted).", registry=r)
        self.poison = Counter(
            "notifier_poison_messages",
            "Messages that can never be processed (left for the DLQ).",
            ["reason"],
            registry=r,
        )
        self.latency = Histogram(
            "notifier_processing_seconds",
            "From receive to delete, per message.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.batches = Counter("notifier_batches", "Non-empty batches processed, by queue.", ["queue"], registry=r)
        # Set by dead_letters.DeadLetterSampler.
        self.dead_letters = Gauge(
            "notifier_dead_letter_messages", "Messages waiting in each dead-letter queue.", ["queue"], registry=r
        )
        self.dead_letter_sample_errors = Counter(
            "notifier_dead_letter_sample_errors", "Failed reads of a dead-letter queue's depth.", registry=r
        )
        for event_type in EVENT_TYPES:
            self.emails_sent.labels(event_type=event_type)
