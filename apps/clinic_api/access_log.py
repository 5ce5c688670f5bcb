"""Who read a patient's data. Every read by anyone other than the patient — profile, appointments, exams, result
downloads, account changes — adds a row per patient to `audit_log` (subject_id = the patient) with the caller, the
action, the instant, the client's address and the request id, in the transaction of the read; the patient lists them
at GET /me/access-log. The patient's own reads are not rows: the log answers "who else saw my data"."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Request
from sqlalchemy.orm import Session

from clinic_api.db import HotPool, Prepared
from clinic_api.models import AuditLog
from clinic_common.logging import request_id


def client_ip(request: Request) -> str | None:
    # uvicorn runs with --proxy-headers and trusts private addresses (the ALB): this is the forwarded client.
    return request.client.host if request.client else None


def others(actor_id: int, patient_ids: Iterable[int]) -> list[int]:
    return sorted({p for p in patient_ids if p != actor_id})


def record(
    session: Session,
    request: Request,
    actor_id: int,
    action: str,
    patient_ids: Iterable[int],
    exam_id: int | None = None,
    outcome: str = "granted",
) -> None:
    """Adds the rows to the caller's transaction (the caller commits)."""
    for patient_id in others(actor_id, patient_ids):
        session.add(
            AuditLog(
                user_id=actor_id,
                action=action,
                exam_id=exam_id,
                outcome=outcome,
                request_id=request_id.get(),
                subject_id=patient_id,
                client_ip=client_ip(request),
            )
        )


_RECORD_MANY = Prepared(
    "INSERT INTO audit_log (at, user_id, action, outcome, request_id, subject_id, client_ip) "
    "SELECT now(), %(user_id)s, %(action)s, 'granted', %(request_id)s, patient_id, %(client_ip)s "
    "FROM unnest(CAST(%(patient_ids)s AS integer[])) AS patient_id RETURNING id",
    {},
)


async def record_async(pool: HotPool, request: Request, actor_id: int, action: str, patient_ids: Iterable[int]) -> None:
    """`record` for the async hot paths: one statement on the hot pool (autocommit)."""
    if ids := others(actor_id, patient_ids):
        await _RECORD_MANY.fetch(
            pool,
            user_id=actor_id,
            action=action,
            request_id=request_id.get(),
            patient_ids=ids,
            client_ip=client_ip(request),
        )
