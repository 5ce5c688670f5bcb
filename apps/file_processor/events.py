"""The `file.uploaded` event the API's outbox sends to the file queue, and its validation.

SQS body: ``{"id": "<uuid>", "type": "file.uploaded", "occurred_at": "<iso8601>", "payload": {"exam_id": 1,
"result_key": "exams/1/<uuid>.pdf", "uploaded_by": 7, ...}}``. Anything else is a poison message: it is never deleted,
so SQS moves it to the DLQ after ``maxReceiveCount`` receives. The payload also carries the patient's name and email
(the API's notice): they are never read here, and never logged.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clinic_common.retry import PoisonMessage

EVENT_TYPE = "file.uploaded"
MAX_BODY_BYTES = 256 * 1024
# PostgreSQL integer ids: anything outside cannot name a row.
MAX_ID = 2**31 - 1
MAX_KEY_LENGTH = 300  # exams.result_key


@dataclass(frozen=True)
class Upload:
    event_id: str
    exam_id: int
    result_key: str
    uploaded_by: int | None
    """The staff member who uploaded it (told of the verdict when the exam has no doctor); None in events the
    migration to this release wrote for results uploaded before it."""


def _id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise PoisonMessage("invalid_field", f"payload.{field} must be an integer from 1 to {MAX_ID}")
    return value


def parse_upload(body: str, attributes: Mapping[str, Any] | None, upload_prefix: str) -> Upload:
    """Validate an SQS message body (and its ``event_type`` attribute, when present) into an Upload."""
    if len(body.encode("utf-8")) > MAX_BODY_BYTES:
        raise PoisonMessage("invalid_envelope", "body too large")
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, TypeError):
        raise PoisonMessage("invalid_json", "body is not JSON") from None
    if not isinstance(doc, dict):
        raise PoisonMessage("invalid_envelope", "body is not a JSON object")
    for field in ("id", "type", "payload"):
        if field not in doc:
            raise PoisonMessage("missing_field", field)
    if doc["type"] != EVENT_TYPE:
        raise PoisonMessage("unknown_type", f"{doc['type']!r:.80}; allowed: {EVENT_TYPE}")
    attr = (attributes or {}).get("event_type")
    attr_value = attr.get("StringValue") if isinstance(attr, Mapping) else attr
    if attr_value is not None and attr_value != EVENT_TYPE:
        raise PoisonMessage("invalid_envelope", f"event_type attribute {attr_value!r:.80} != body type")
    try:
        event_id = str(uuid.UUID(str(doc["id"])))
    except ValueError:
        raise PoisonMessage("invalid_field", "id is not a UUID") from None
    payload = doc["payload"]
    if not isinstance(payload, dict):
        raise PoisonMessage("invalid_envelope", "payload is not a JSON object")
    exam_id = _id(payload.get("exam_id"), "exam_id")
    key = payload.get("result_key")
    if not isinstance(key, str) or not key:
        raise PoisonMessage("missing_field", "payload.result_key")
    uploaded_by = None if payload.get("uploaded_by") is None else _id(payload["uploaded_by"], "uploaded_by")
    # The worker reads, copies and deletes this key: only keys where the API stores results, nothing it could be
    # pointed elsewhere with (another prefix, a path climbing out of it, control characters).
    if (
        not key.startswith(upload_prefix)
        or len(key) > MAX_KEY_LENGTH
        or ".." in key.split("/")
        or any(ord(c) < 32 or ord(c) == 127 for c in key)
    ):
        raise PoisonMessage(
            "invalid_field", f"payload.result_key is not a key under {upload_prefix!r} of at most {MAX_KEY_LENGTH}"
        )
    return Upload(event_id, exam_id, key, uploaded_by)
