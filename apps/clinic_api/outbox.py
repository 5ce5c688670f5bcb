"""Transactional outbox: events are rows written in the transaction of the change; a relay sends them to SQS.

`python -m clinic_api.outbox` runs the relay alone (the API also runs it in the background)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Gauge
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clinic_api.db import make_engine
from clinic_api.models import OutboxEvent, User
from clinic_api.settings import QueueSettings, get_settings
from clinic_common.aws import client
from clinic_common.logging import Outage, configure_logging

log = logging.getLogger("clinic.outbox")
PENDING = Gauge("clinic_outbox_pending", "Events written but not yet sent to SQS")
OLDEST = Gauge("clinic_outbox_oldest_pending_seconds", "Age of the oldest unsent event")
MAX_BACKOFF_SECONDS = 300


def queue_for(event_type: str, queues: QueueSettings) -> str:
    if event_type.startswith("account.") or event_type in ("patient.registered", "doctor.registered"):
        return queues.account
    if event_type.startswith("appointment."):
        return queues.appointment
    if event_type == "exam.result.ready":
        return queues.exam_result
    if event_type.startswith("exam."):
        return queues.exam
    if event_type == "file.uploaded":  # the file processor's input, and its only one
        return queues.file
    if event_type.startswith("file."):  # the file processor's verdicts, emailed by the notifier
        return queues.exam
    raise ValueError(f"event type {event_type!r} has no queue")


def recipient(user: User) -> dict[str, Any]:
    """Who an email goes to, in their language (the notifier picks the template's text by it)."""
    return {
        "recipient_email": user.email,
        "recipient_name": user.full_name,
        "recipient_language": user.language or "pt-BR",
        "user_id": user.id,
    }


def record(session: Session, event_type: str, payload: dict[str, Any]) -> OutboxEvent:
    """Adds the event to the caller's transaction: it exists exactly when the change does."""
    event = OutboxEvent(event_type=event_type, payload=payload)
    session.add(event)
    return event


def message(event: OutboxEvent) -> dict[str, Any]:
    body = {
        "id": str(event.event_id),
        "type": event.event_type,
        "occurred_at": event.occurred_at.isoformat(),
        "payload": event.payload,
    }
    return {
        "Id": str(event.id),
        "MessageBody": json.dumps(body),
        "MessageAttributes": {"event_type": {"DataType": "String", "StringValue": event.event_type}},
    }


def relay_once(session: Session, sqs: Any, queues: QueueSettings, batch_size: int = 50) -> int:
    """Sends one batch of due events; returns how many were sent. Rows stay pending on any failure."""
    now = datetime.now(UTC)
    events = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.sent_at.is_(None), OutboxEvent.next_attempt_at <= now)
        .order_by(OutboxEvent.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    ).all()
    by_queue: dict[str, list[OutboxEvent]] = {}
    for event in events:
        by_queue.setdefault(queue_for(event.event_type, queues), []).append(event)
    sent = 0
    for url, group in by_queue.items():
        for i in range(0, len(group), 10):  # SQS batches hold 10
            chunk = {str(e.id): e for e in group[i : i + 10]}
            try:
                response = sqs.send_message_batch(QueueUrl=url, Entries=[message(e) for e in chunk.values()])
                failed = {f["Id"]: f.get("Message", f.get("Code", "")) for f in response.get("Failed", [])}
            except (BotoCoreError, ClientError) as error:
                failed = {key: str(error) for key in chunk}
            for key, event in chunk.items():
                if key in failed:
                    event.attempts += 1
                    event.last_error = failed[key][:2000]
                    event.next_attempt_at = now + timedelta(seconds=min(2**event.attempts, MAX_BACKOFF_SECONDS))
                else:
                    event.sent_at = now
                    sent += 1
    session.commit()
    return sent


def refresh_gauges(session: Session) -> None:
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxEvent.occurred_at)).where(OutboxEvent.sent_at.is_(None))
    ).one()
    PENDING.set(count)
    OLDEST.set((datetime.now(UTC) - oldest).total_seconds() if oldest else 0)


class Relay(threading.Thread):
    def __init__(self, engine: Any, sqs: Any, queues: QueueSettings, interval: float, batch_size: int):
        super().__init__(name="outbox-relay", daemon=True)
        self.engine, self.sqs, self.queues = engine, sqs, queues
        self.interval, self.batch_size = interval, batch_size
        self.stopping = threading.Event()
        self.outage = Outage(log, "outbox relay pass")

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with Session(self.engine) as session:
                    # A backlog drains batch after batch, but a stop (the API shutting down) ends it after the batch
                    # in hand: what is left stays pending for the next relay, and shutdown is not held up.
                    while (
                        not self.stopping.is_set()
                        and relay_once(session, self.sqs, self.queues, self.batch_size) == self.batch_size
                    ):
                        pass
                    refresh_gauges(session)
            except Exception:  # noqa: BLE001 - the relay must outlive a database restart
                self.outage.failed()
            else:
                self.outage.succeeded()
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)


def main() -> int:
    settings = get_settings()
    configure_logging("clinic-outbox-relay", settings.log_level)
    relay = Relay(
        make_engine(settings),
        client("sqs", settings.aws),
        settings.queues,
        settings.outbox.interval_seconds,
        settings.outbox.batch_size,
    )
    for stop_signal in (signal.SIGTERM, signal.SIGINT):  # finish the batch in hand, then exit
        signal.signal(stop_signal, lambda *_: relay.stopping.set())
    relay.start()
    while relay.is_alive():
        relay.join(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
