"""The worker: long-poll each queue, validate, claim, render, send through SES v2, delete what is done."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from sqlalchemy.exc import DBAPIError

from .events import Event, PoisonMessage, parse_event
from .metrics import Metrics
from .retry import RetryPolicy, call_with_retry, error_code, is_transient
from .store import SentEventStore
from .templates import render

log = logging.getLogger("notifier")

MAX_POLL_BACKOFF = 30.0


@dataclass
class BatchReport:
    """What happened to each message of a batch, by SQS message id."""

    sent: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    poison: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)


class Notifier:
    def __init__(
        self,
        *,
        sqs: Any,
        ses: Any,
        store: SentEventStore,
        queue_urls: Sequence[str],
        from_address: str,
        configuration_set: str | None = None,
        batch_size: int = 10,
        wait_seconds: int = 20,
        retry: RetryPolicy = RetryPolicy(),
        metrics: Metrics | None = None,
        send_concurrency: int = 10,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not queue_urls:
            raise ValueError("queue_urls is empty; allowed: at least one SQS queue URL")
        self.sqs = sqs
        self.ses = ses
        self.store = store
        self.queue_urls = list(queue_urls)
        self.from_address = from_address
        self.configuration_set = configuration_set
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds
        self.retry = retry
        self.metrics = metrics or Metrics()
        self.sleep = sleep
        self._pool = ThreadPoolExecutor(max_workers=send_concurrency, thread_name_prefix="notifier-send")
        self._threads: list[threading.Thread] = []

    # --- one batch -------------------------------------------------------------------------------------------

    def receive(self, queue_url: str) -> list[dict]:
        response = self.sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_seconds,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return response.get("Messages", [])

    def send(self, event: Event) -> str:
        email = render(event)
        kwargs: dict[str, Any] = {
            "FromEmailAddress": self.from_address,
            "Destination": {"ToAddresses": [email.to]},
            "Content": {
                "Simple": {
                    "Subject": {"Data": email.subject, "Charset": "UTF-8"},
                    "Body": {
                        "Text": {"Data": email.text, "Charset": "UTF-8"},
                        "Html": {"Data": email.html, "Charset": "UTF-8"},
                    },
                }
            },
            "EmailTags": [{"Name": "event_type", "Value": event.type.replace(".", "_")}],
        }
        if self.configuration_set:
            kwargs["ConfigurationSetName"] = self.configuration_set

        def retrying(exc: BaseException, delay: float) -> None:
            log.warning(
                "transient SES error, retrying",
                extra={"event_id": event.id, "event_type": event.type, "error": error_code(exc), "retry_in_s": delay},
            )

        response = call_with_retry(lambda: self.ses.send_email(**kwargs), self.retry, self.sleep, retrying)
        return response["MessageId"]

    def process_batch(self, queue_url: str, messages: Sequence[dict], received_at: float | None = None) -> BatchReport:
        received_at = time.monotonic() if received_at is None else received_at
        report = BatchReport()
        by_event: dict[str, tuple[Event, list[dict]]] = {}
        for message in messages:
            try:
                event = parse_event(message.get("Body", ""), message.get("MessageAttributes"))
            except PoisonMessage as exc:
                # Not deleted: SQS moves it to the DLQ after maxReceiveCount receives.
                self.metrics.poison.labels(reason=exc.reason).inc()
                report.poison.append(message["MessageId"])
                log.error(
                    "poison message left for the DLQ",
                    extra={
                        "message_id": message["MessageId"],
                        "reason": exc.reason,
                        "detail": exc.detail,
                        "receive_count": message.get("Attributes", {}).get("ApproximateReceiveCount"),
                        "queue_url": queue_url,
                    },
                )
                continue
            by_event.setdefault(event.id, (event, []))[1].append(message)

        to_delete: list[dict] = []
        if by_event:
            to_delete = self._deliver(by_event, report)
        self._delete(queue_url, to_delete, report)
        done = time.monotonic() - received_at
        for _ in report.deleted:
            self.metrics.latency.observe(done)
        if messages:
            self.metrics.batches.labels(queue=queue_url.rsplit("/", 1)[-1]).inc()
        return report

    def _fail(self, report: BatchReport, messages: list[dict], reason: str) -> None:
        for m in messages:
            report.failed[m["MessageId"]] = reason
            self.metrics.messages_failed.labels(reason=reason).inc()

    def _deliver(self, by_event: dict[str, tuple[Event, list[dict]]], report: BatchReport) -> list[dict]:
        try:
            claim = self.store.claim([(eid, ev.type) for eid, (ev, _) in by_event.items()])
        except Exception:
            log.exception(
                "could not claim events; leaving the batch for redelivery", extra={"event_ids": list(by_event)}
            )
            self._fail(report, [m for _, ms in by_event.values() for m in ms], "database")
            raise

        to_delete: list[dict] = []
        for eid in claim.already_sent:
            event, msgs = by_event[eid]
            to_delete.extend(msgs)
            report.duplicates.extend(m["MessageId"] for m in msgs)
            self.metrics.duplicates.inc(len(msgs))
            log.info("duplicate event, deleting without sending", extra={"event_id": eid, "event_type": event.type})
        for eid in claim.in_progress:
            event, msgs = by_event[eid]
            self._fail(report, msgs, "in_progress")
            log.info("event being sent by another worker; left for redelivery", extra={"event_id": eid})

        futures = {eid: self._pool.submit(self.send, by_event[eid][0]) for eid in claim.claimed}
        sent: dict[str, str] = {}
        released: list[str] = []
        for eid, future in futures.items():
            event, msgs = by_event[eid]
            try:
                sent[eid] = future.result()
            except Exception as exc:
                released.append(eid)
                reason = (
                    "ses_transient"
                    if is_transient(exc)
                    else "ses_rejected"
                    if isinstance(exc, ClientError)
                    else "error"
                )
                self._fail(report, msgs, reason)
                log.error(
                    "email not sent; left for redelivery",
                    exc_info=reason == "error",
                    extra={
                        "event_id": eid,
                        "event_type": event.type,
                        "reason": reason,
                        "error": error_code(exc),
                        "message_id": msgs[0]["MessageId"],
                    },
                )
                continue
            self.metrics.emails_sent.labels(event_type=event.type).inc()
            leader, *copies = msgs
            report.sent.append(leader["MessageId"])
            to_delete.extend(msgs)
            if copies:
                report.duplicates.extend(m["MessageId"] for m in copies)
                self.metrics.duplicates.inc(len(copies))
            log.info(
                "email sent",
                extra={
                    "event_id": eid,
                    "event_type": event.type,
                    "message_id": leader["MessageId"],
                    "ses_message_id": sent[eid],
                },
            )
        try:
            self.store.finish(sent, released)
        except Exception:
            # Still delete what was sent: a claim stuck in 'claimed' is harmless, a resend is not.
            log.exception("could not record sent events", extra={"event_ids": list(sent) + released})
        return to_delete

    def _delete(self, queue_url: str, messages: list[dict], report: BatchReport) -> None:
        if not messages:
            return
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        by_entry = {str(i): m for i, m in enumerate(messages)}
        try:
            response = call_with_retry(
                lambda: self.sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries), self.retry, self.sleep
            )
        except Exception as exc:
            # Redelivered later and recognised as a duplicate: nothing is sent twice.
            log.error("could not delete messages", extra={"queue_url": queue_url, "error": error_code(exc)})
            self._fail(report, messages, "delete")
            return
        for ok in response.get("Successful", []):
            report.deleted.append(by_entry[ok["Id"]]["MessageId"])
        for failed in response.get("Failed", []):
            msg = by_entry[failed["Id"]]
            self._fail(report, [msg], "delete")
            log.error("could not delete message", extra={"message_id": msg["MessageId"], "error": failed.get("Code")})

    # --- the loop --------------------------------------------------------------------------------------------

    def poll(self, queue_url: str, stop: threading.Event) -> None:
        """Long-poll one queue until ``stop`` is set; a batch in hand is always finished first."""
        backoff = 0.0
        db_down = False
        while not stop.is_set():
            try:
                if db_down:
                    # Receiving while the database is down would burn receives towards the DLQ.
                    self.store.ping()
                    db_down = False
                    log.info("database reachable again", extra={"queue_url": queue_url})
                messages = self.receive(queue_url)
                received_at = time.monotonic()
                if messages:
                    self.process_batch(queue_url, messages, received_at)
                backoff = 0.0
            except Exception as exc:
                db_down = db_down or _is_database_error(exc)
                backoff = min(MAX_POLL_BACKOFF, backoff * 2 or 1.0)
                log.error(
                    "poll failed; backing off",
                    exc_info=not is_transient(exc),
                    extra={"queue_url": queue_url, "error": error_code(exc), "retry_in_s": backoff},
                )
                stop.wait(backoff)

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        self._threads = [
            threading.Thread(target=self.poll, args=(url, stop), name=f"poll-{url.rsplit('/', 1)[-1]}", daemon=True)
            for url in self.queue_urls
        ]
        for t in self._threads:
            t.start()
        return self._threads

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def join(self, timeout: float | None = None) -> bool:
        """Waits for the pollers (each ends after the batch in hand) up to ``timeout``; True when all have ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        finished = not any(t.is_alive() for t in self._threads)
        # Past the timeout, sends still running are not waited for: the caller is about to exit without them.
        self._pool.shutdown(wait=finished, cancel_futures=not finished)
        return finished


def _is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError)  # OperationalError among them
