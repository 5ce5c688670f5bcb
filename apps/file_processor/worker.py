"""The worker: long-poll the file queue; for each `file.uploaded`, download the result, check it, record its SHA-256
and the verdict with its event, set a bad file aside; delete what is done.

Messages are taken one at a time: a check may take up to ``check_timeout_seconds``, and a message waiting in a
batch behind others would outlive its visibility timeout, be delivered again and count towards the DLQ.

Failures, and what happens to the message:
- poison (not a file.uploaded this worker can act on, an unknown exam, an object gone from both places): not deleted,
  logged with its receive count; SQS moves it to the DLQ at ``maxReceiveCount`` (the Alarms component alarms there);
- transient (S3, SQS or PostgreSQL unavailable): not deleted, delivered again after the visibility timeout; while
  PostgreSQL is down no message is received at all, so an outage does not push good messages to the DLQ.
Logs name event ids, exam ids and keys, never the payload (it holds the patient's name and email).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from botocore.exceptions import ClientError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from clinic_common.retry import error_code, is_transient

from .events import PoisonMessage, Upload, parse_upload
from .metrics import Metrics
from .pdf_check import Verdict as CheckVerdict
from .pdf_check import check_pdf
from .store import ExamStore, Verdict

log = logging.getLogger("file_processor")

MAX_POLL_BACKOFF = 30.0
Checker = Callable[[bytes], CheckVerdict]


class ObjectMissing(Exception):
    """The uploaded object is in neither the upload nor the quarantine place."""


class FileProcessor:
    def __init__(
        self,
        *,
        sqs: Any,
        s3: Any,
        store: ExamStore,
        queue_url: str,
        bucket: str,
        upload_prefix: str,
        quarantine_prefix: str,
        max_file_bytes: int,
        checker: Checker,
        wait_seconds: int = 20,
        metrics: Metrics | None = None,
    ):
        self.sqs, self.s3, self.store = sqs, s3, store
        self.queue_url, self.bucket = queue_url, bucket
        self.upload_prefix, self.quarantine_prefix = upload_prefix, quarantine_prefix
        self.max_file_bytes = max_file_bytes
        self.checker = checker
        self.wait_seconds = wait_seconds
        self.metrics = metrics or Metrics()
        self.max_receive_count: int | None = None
        self._thread: threading.Thread | None = None

    # --- one message -----------------------------------------------------------------------------------------

    def quarantine_key(self, key: str) -> str:
        return f"{self.quarantine_prefix}{key}"

    def process(self, message: dict) -> str:
        """Handle one message; returns its outcome (`verified`, `quarantined`, `duplicate`, `superseded`, `poison`).
        The message is deleted unless it is poison; any other failure raises and leaves it for redelivery."""
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            upload = parse_upload(message.get("Body", ""), message.get("MessageAttributes"), self.upload_prefix)
            outcome = self._handle(upload)
        except PoisonMessage as exc:
            self._poison(message, exc, receives)
            return "poison"
        self.metrics.messages.labels(outcome=outcome).inc()
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return outcome

    def _handle(self, upload: Upload) -> str:
        context = {"event_id": upload.event_id, "exam_id": upload.exam_id, "key": upload.result_key}
        exam = self.store.exam(upload.exam_id)
        if exam is None:
            raise PoisonMessage("unknown_exam", f"exam {upload.exam_id} does not exist")
        quarantined = self.quarantine_key(upload.result_key)
        if exam.checked and exam.result_key in (upload.result_key, quarantined):
            log.info("result already checked; message deleted", extra=context)
            return "duplicate"
        if exam.result_key != upload.result_key:
            log.info("a newer upload replaced this result; message deleted", extra=context)
            return "superseded"

        try:
            data, stored_at = self._download(upload.result_key)
        except ObjectMissing as exc:
            raise PoisonMessage("object_missing", f"in neither place ({exc})") from None
        if data is None:
            check = CheckVerdict(False, "too_large")
            sha256 = None
        else:
            started = time.monotonic()
            check = self.checker(data)
            self.metrics.check_seconds.observe(time.monotonic() - started)
            sha256 = hashlib.sha256(data).hexdigest()
        status: Literal["verified", "quarantined"] = "verified" if check.ok else "quarantined"
        verdict = Verdict(
            exam_id=upload.exam_id,
            checked_key=upload.result_key,
            quarantine_key=quarantined,
            sha256=sha256,
            status=status,
            reason=check.reason,
            uploaded_by=upload.uploaded_by,
        )
        move = None if check.ok else (lambda: self._move_aside(upload.result_key, quarantined, stored_at))
        outcome = self.store.record(verdict, move)
        if outcome != "recorded":
            log.info(f"result {outcome} while it was checked; message deleted", extra=context)
            return outcome
        if not check.ok:
            self.metrics.rejections.labels(reason=check.reason).inc()
        log.info(
            "result verified" if check.ok else "result refused and set aside; the doctor is told",
            extra={**context, "reason": check.reason, "pages": check.pages, "sha256": sha256},
        )
        return status

    def _download(self, key: str) -> tuple[bytes | None, str]:
        """The object's bytes (None when larger than allowed) and where they were found: the upload place, or the
        quarantine place when a move was interrupted before its verdict was recorded."""
        missing: list[str] = []
        for where in (key, self.quarantine_key(key)):
            try:
                response = self.s3.get_object(Bucket=self.bucket, Key=where)
            except ClientError as exc:
                # S3 answers 403 rather than 404 for a missing key to a caller without s3:ListBucket there: the
                # platform grants it on both prefixes, and either answer sends the search on to the next place.
                if error_code(exc) in ("NoSuchKey", "404", "AccessDenied", "403"):
                    missing.append(f"{where}: {error_code(exc)}")
                    continue
                raise
            body = response["Body"]
            try:
                if response.get("ContentLength", 0) > self.max_file_bytes:
                    return None, where
                data = body.read(self.max_file_bytes + 1)
            finally:
                body.close()
            return (None if len(data) > self.max_file_bytes else data), where
        raise ObjectMissing("; ".join(missing))

    def _move_aside(self, key: str, quarantined: str, found_at: str) -> None:
        """Copy to the quarantine place, then delete the original: both idempotent, so a retry completes a move
        interrupted at any point. The copy names no encryption: the bucket's default (its KMS key) applies, which its
        policy requires. Content-Type octet-stream: nothing that fetches it treats it as a PDF."""
        if found_at == key:
            self.s3.copy_object(
                Bucket=self.bucket,
                Key=quarantined,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",
                ContentType="application/octet-stream",
                Metadata={"quarantined-from": key},
                # No tag-set to copy (the API sets none): the role then needs no s3:GetObjectTagging.
                TaggingDirective="REPLACE",
            )
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def _poison(self, message: dict, exc: PoisonMessage, receives: int) -> None:
        self.metrics.poison.labels(reason=exc.reason).inc()
        last = self.max_receive_count is not None and receives >= self.max_receive_count
        log.error(
            "poison message: moved to the DLQ at its next receive" if last else "poison message left for the DLQ",
            extra={
                "message_id": message.get("MessageId"),
                "reason": exc.reason,
                "detail": exc.detail,
                "receive_count": receives,
                "max_receive_count": self.max_receive_count,
                "queue_url": self.queue_url,
            },
        )

    # --- the loop --------------------------------------------------------------------------------------------

    def read_redrive_policy(self) -> None:
        """Learn the queue's maxReceiveCount, so that a poison message's log says when it goes to the DLQ."""
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"])
        policy = attributes.get("Attributes", {}).get("RedrivePolicy")
        self.max_receive_count = int(json.loads(policy)["maxReceiveCount"]) if policy else None

    def receive(self) -> list[dict]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=self.wait_seconds,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return response.get("Messages", [])

    def poll(self, stop: threading.Event) -> None:
        """Long-poll until ``stop`` is set; the message in hand is always finished first."""
        backoff = 0.0
        db_down = False
        while not stop.is_set():
            message_id = None
            try:
                if db_down:
                    # Receiving while the database is down would burn receives towards the DLQ.
                    self.store.ping()
                    db_down = False
                    log.info("database reachable again")
                if self.max_receive_count is None:
                    self.read_redrive_policy()
                for message in self.receive():
                    message_id = message.get("MessageId")
                    self.process(message)
                backoff = 0.0
            except Exception as exc:
                db_down = db_down or isinstance(exc, DBAPIError)
                # No traceback for database errors: SQLAlchemy's messages quote a statement's parameters, and the
                # outbox insert's are the recipient's name and email.
                reason = "database" if isinstance(exc, SQLAlchemyError) else "aws" if is_transient(exc) else "error"
                if message_id:
                    self.metrics.failures.labels(reason=reason).inc()
                backoff = min(MAX_POLL_BACKOFF, backoff * 2 or 1.0)
                log.error(
                    "processing failed; the message is left for redelivery" if message_id else "poll failed",
                    exc_info=reason == "error",
                    extra={"message_id": message_id, "error": error_code(exc), "retry_in_s": backoff},
                )
                stop.wait(backoff)

    def start(self, stop: threading.Event) -> threading.Thread:
        self._thread = threading.Thread(target=self.poll, args=(stop,), name="poll-files", daemon=True)
        self._thread.start()
        return self._thread

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.alive()


def make_checker(max_pages: int, timeout: float, memory_mb: int) -> Checker:
    return lambda data: check_pdf(data, max_pages=max_pages, timeout=timeout, memory_mb=memory_mb)
