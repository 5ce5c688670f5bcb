"""What the processor reads and writes in the API's database: the exam's result columns, the recipient of the
verdict, and the verdict's event in the API's transactional outbox (the API's relay sends it to SQS).

The tables are the API's (apps/clinic_api/models.py, migrated by its Alembic revisions); the processor owns no
schema. A verdict is recorded once: under the exam row's lock, only while the exam still names the checked key and
has no verdict, so a redelivered or concurrently processed message changes nothing and emits nothing twice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine, text

Outcome = Literal["recorded", "duplicate", "superseded"]


@dataclass(frozen=True)
class ExamState:
    id: int
    status: str
    exam_type: str
    result_key: str | None
    checked: bool
    doctor_id: int | None


@dataclass(frozen=True)
class Verdict:
    exam_id: int
    checked_key: str
    """The key the message named (the exam's result_key when it was uploaded)."""
    quarantine_key: str
    """Where the file goes when it is refused."""
    sha256: str | None
    """None only for a file too large to read."""
    status: Literal["verified", "quarantined"]
    reason: str
    uploaded_by: int | None

    @property
    def stored_key(self) -> str:
        """Where the file is once the verdict is recorded."""
        return self.checked_key if self.status == "verified" else self.quarantine_key


_EXAM = text(
    "SELECT id, status, exam_type, result_key, result_checked_at IS NOT NULL AS checked, doctor_id "
    "FROM exams WHERE id = :id"
)
_LOCK = text(_EXAM.text + " FOR UPDATE")
_RECORD = text(
    "UPDATE exams SET status = :status, result_key = :stored_key, result_sha256 = :sha256, result_checked_at = now() "
    "WHERE id = :id"
)
_USER = text("SELECT email, full_name FROM users WHERE id = :id")
_OUTBOX = text(
    "INSERT INTO outbox (event_id, event_type, occurred_at, payload, attempts, next_attempt_at) "
    "VALUES (:event_id, :event_type, now(), CAST(:payload AS json), 0, now())"
)
EVENT_TYPES = {"verified": "file.processed", "quarantined": "file.quarantined"}


class ExamStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def ping(self) -> None:
        """Raises unless PostgreSQL answers and the exams table has the result-check columns (migration 0005)."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT result_sha256, result_checked_at FROM exams LIMIT 1"))

    def exam(self, exam_id: int) -> ExamState | None:
        with self.engine.connect() as conn:
            row = conn.execute(_EXAM, {"id": exam_id}).one_or_none()
        return None if row is None else ExamState(**row._mapping)

    def record(self, verdict: Verdict, move: Callable[[], None] | None = None) -> Outcome:
        """Record the verdict and its event in one transaction, unless the exam has moved on or has one already.

        ``move`` (the quarantine move) runs under the exam row's lock, after those checks: a worker whose check of a
        redelivered copy came out differently (a timeout on a busy node) never moves a file another worker verified.
        If the transaction fails after it, the redelivered message finds the file in quarantine and records it then.
        """
        with self.engine.begin() as conn:
            row = conn.execute(_LOCK, {"id": verdict.exam_id}).one_or_none()
            if row is None or row.status == "cancelled":  # cancelled while being checked: its verdict changes nothing
                return "superseded"
            if row.checked and row.result_key in (verdict.checked_key, verdict.quarantine_key):
                return "duplicate"  # whichever verdict another worker recorded for this upload stands
            if row.result_key != verdict.checked_key or row.checked:
                return "superseded"  # a newer upload replaced this file
            if move is not None:
                move()
            conn.execute(
                _RECORD,
                {
                    "id": verdict.exam_id,
                    "status": verdict.status,
                    "stored_key": verdict.stored_key,
                    "sha256": verdict.sha256,
                },
            )
            payload = self._payload(conn, verdict, row.exam_type, row.doctor_id)
            if payload is not None:
                conn.execute(
                    _OUTBOX,
                    {
                        "event_id": uuid.uuid4(),
                        "event_type": EVENT_TYPES[verdict.status],
                        "payload": json.dumps(payload),
                    },
                )
        return "recorded"

    def _payload(self, conn: Any, v: Verdict, exam_type: str, doctor_id: int | None) -> dict[str, Any] | None:
        """The event for the exam's doctor, or for the uploader when it has none; None when neither is known."""
        recipient_id = doctor_id or v.uploaded_by
        user = conn.execute(_USER, {"id": recipient_id}).one_or_none() if recipient_id else None
        if user is None:
            return None
        return {
            "recipient_email": user.email,
            "recipient_name": user.full_name,
            "exam_id": v.exam_id,
            "exam_type": exam_type,
            "sha256": v.sha256,
            "reason": v.reason,
        }
