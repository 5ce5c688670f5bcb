"""The event contract the clinic API's outbox publishes, and its validation.

SQS body: ``{"id": "<uuid>", "type": "<event type>", "occurred_at": "<iso8601>", "payload": {...}}`` with the
message attribute ``event_type``. Anything that does not fit is a poison message: it is never deleted, so SQS moves
it to the queue's DLQ after ``maxReceiveCount`` receives.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clinic_common.retry import PoisonMessage

RECIPIENT_FIELDS = ("recipient_email", "recipient_name")

# Payload fields each event type must carry besides the recipient; optional ones are read by the templates.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "account.created": (),
    "account.verification_requested": ("verify_url",),
    "account.registration_attempted": (),
    "account.password_reset_requested": ("reset_url",),
    "patient.registered": (),
    "doctor.registered": (),
    "appointment.confirmed": ("starts_at", "doctor_name"),
    "appointment.cancelled": ("starts_at", "doctor_name"),
    "exam.created": ("exam_type",),
    "exam.completed": ("exam_type",),
    "exam.result.ready": ("exam_type",),
    "file.uploaded": (),
    # The file processor's verdicts on an uploaded result, for the exam's doctor (or the uploader, without one).
    "file.processed": ("exam_type",),
    "file.quarantined": ("exam_type",),
    "appointment.rescheduled": ("starts_at", "previous_starts_at", "doctor_name"),
    "appointment.reminder": ("starts_at", "doctor_name"),
    "exam.cancelled": ("exam_type",),
    "account.updated": ("change",),
    "account.deleted": ("retained_until",),
}
# The recipient's language picks the template's text. Events published before it existed carry none: those stay in
# English, as they were written then; the API now always sends it.
LANGUAGES = ("pt-BR", "en")
LANGUAGE_WHEN_MISSING = "en"
ACCOUNT_CHANGES = ("profile", "password", "disabled", "enabled", "consent")
EVENT_TYPES = frozenset(REQUIRED_FIELDS)
DATETIME_FIELDS = ("starts_at", "previous_starts_at", "retained_until")

# Deliberately loose (SES has the final word) but enough to refuse header injection and obvious garbage.
_EMAIL_RE = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")
MAX_BODY_BYTES = 256 * 1024


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    occurred_at: datetime
    payload: Mapping[str, Any]

    @property
    def recipient_email(self) -> str:
        return self.payload["recipient_email"]

    @property
    def recipient_name(self) -> str:
        return self.payload["recipient_name"]

    @property
    def language(self) -> str:
        return self.payload.get("recipient_language") or LANGUAGE_WHEN_MISSING


def parse_datetime(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise PoisonMessage("invalid_field", f"{field} must be an ISO 8601 string")
    try:
        # Python 3.11 parses the trailing "Z" as UTC.
        return datetime.fromisoformat(value)
    except ValueError:
        raise PoisonMessage("invalid_field", f"{field} is not an ISO 8601 date-time") from None


def parse_event(body: str | bytes, attributes: Mapping[str, Any] | None = None) -> Event:
    """Validate an SQS message body (and its ``event_type`` attribute, when present) into an Event."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if len(body.encode("utf-8")) > MAX_BODY_BYTES:
        raise PoisonMessage("invalid_envelope", "body too large")
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, TypeError):
        raise PoisonMessage("invalid_json", "body is not JSON") from None
    if not isinstance(doc, dict):
        raise PoisonMessage("invalid_envelope", "body is not a JSON object")

    for key in ("id", "type", "occurred_at", "payload"):
        if key not in doc:
            raise PoisonMessage("missing_field", key)
    event_type = doc["type"]
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise PoisonMessage("unknown_type", repr(event_type)[:80])
    attr = (attributes or {}).get("event_type")
    attr_value = attr.get("StringValue") if isinstance(attr, Mapping) else attr
    if attr_value is not None and attr_value != event_type:
        raise PoisonMessage("invalid_envelope", f"event_type attribute {attr_value!r:.80} != body type")
    try:
        event_id = str(uuid.UUID(str(doc["id"])))
    except ValueError:
        raise PoisonMessage("invalid_field", "id is not a UUID") from None
    occurred_at = parse_datetime(doc["occurred_at"], "occurred_at")

    payload = doc["payload"]
    if not isinstance(payload, dict):
        raise PoisonMessage("invalid_envelope", "payload is not a JSON object")
    for field in RECIPIENT_FIELDS + REQUIRED_FIELDS[event_type]:
        value = payload.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise PoisonMessage("missing_field", f"payload.{field}")
        if not isinstance(value, str):
            raise PoisonMessage("invalid_field", f"payload.{field} must be a string")
    if not _EMAIL_RE.fullmatch(payload["recipient_email"]):
        raise PoisonMessage("invalid_field", "payload.recipient_email is not an email address")
    if payload.get("recipient_language") not in (None, *LANGUAGES):
        raise PoisonMessage("invalid_field", f"payload.recipient_language must be one of {LANGUAGES}")
    if event_type == "account.updated" and payload["change"] not in ACCOUNT_CHANGES:
        raise PoisonMessage("invalid_field", f"payload.change must be one of {ACCOUNT_CHANGES}")
    for field in DATETIME_FIELDS:
        if field in payload and payload[field] is not None:
            parse_datetime(payload[field], f"payload.{field}")
    if payload.get("time_zone") is not None:
        try:
            ZoneInfo(str(payload["time_zone"]))
        except (ZoneInfoNotFoundError, ValueError):
            raise PoisonMessage("invalid_field", f"payload.time_zone {payload['time_zone']!r:.60} is unknown") from None
    return Event(id=event_id, type=event_type, occurred_at=occurred_at, payload=payload)
