"""What the privacy API routes (routes/privacy.py) and the portal's pages (privacy/pages.py) share: one rule, one
audit row, whichever of them a patient or a staff member uses. Medical records are kept on erasure: see the README,
"Erasure"."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

from botocore.client import BaseClient
from fastapi import HTTPException, Request, status
from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from clinic_api import access_log, outbox, pagination
from clinic_api.accounts.service import password_guessed
from clinic_api.models import Appointment, AuditLog, Consent, Exam, OutboxEvent, PatientProfile, User
from clinic_api.routes.accounts import check_notice, record_consent
from clinic_api.routes.profiles import profile_out
from clinic_api.schemas import (
    AccessEntry,
    AppointmentOut,
    AuditRow,
    ConsentOut,
    ErasureOut,
    ExamOut,
    ExportedExam,
    PatientExport,
)
from clinic_api.security import Principal, revoke_tokens
from clinic_api.settings import Settings
from clinic_api.throttle import client_of
from clinic_common.logging import request_id

WRONG_PASSWORD = "password is wrong"
ERASED = ["email", "password", "phone", "emergency contact", "optional consents", "pending emails"]
KEPT = [
    "medical record: appointments, exams and their result files",
    "the record's identification: full name, date of birth, CPF (encrypted)",
    "consent history and the audit log (proof of what was agreed and done)",
]


class WrongPassword(HTTPException):
    """400: the password confirming an erasure is not the account's."""

    def __init__(self) -> None:
        super().__init__(status.HTTP_400_BAD_REQUEST, WRONG_PASSWORD)


def audit(session: Session, request: Request, user_id: int, action: str, outcome: str) -> None:
    """A row about the patient's own account, by the patient (an export, an erasure): not in their access log."""
    session.add(
        AuditLog(
            user_id=user_id,
            action=action,
            outcome=outcome,
            request_id=request_id.get(),
            subject_id=user_id,
            client_ip=access_log.client_ip(request),
        )
    )


def consents(session: Session, patient_id: int) -> list[Consent]:
    """Every consent the patient gave, oldest first; the last one is in force."""
    return list(session.scalars(select(Consent).where(Consent.user_id == patient_id).order_by(Consent.id)))


def consent_page(
    session: Session, request: Request, patient_id: int, limit: int, cursor: str | None, newest_first: bool = False
) -> tuple[list[Consent], str | None]:
    """The patient's consents oldest first (the API's order; the portal's history asks for `newest_first`), `limit`
    from `cursor` (pagination.start; each order a list of its own), and the next page's cursor."""
    scope = "me/consents?newest" if newest_first else "me/consents"
    query = select(Consent).where(Consent.user_id == patient_id).limit(limit + 1)
    query = query.order_by(Consent.id.desc() if newest_first else Consent.id)
    if after := pagination.start(request, scope, patient_id, cursor, (int,)):
        query = query.where(Consent.id < after[0] if newest_first else Consent.id > after[0])
    rows = list(session.scalars(query))
    return rows[:limit], pagination.next_cursor(request, scope, patient_id, rows, limit, lambda c: [c.id])


def consent_in_force(session: Session, patient_id: int) -> Consent | None:
    """The patient's last consent: the one in force."""
    return session.scalar(select(Consent).where(Consent.user_id == patient_id).order_by(Consent.id.desc()).limit(1))


def change_consent(
    session: Session,
    request: Request,
    settings: Settings,
    patient_id: int,
    notice_version: str,
    purposes: Sequence[str],
) -> Consent:
    """Records the patient's choices as a new entry (earlier ones stay in the history) and emails them the change.
    `purposes` comes validated by ConsentIn (care included)."""
    check_notice(notice_version, settings)
    patient = session.get_one(User, patient_id)
    consent = record_consent(session, patient, notice_version, purposes, request)
    outbox.record(session, "account.updated", {**outbox.recipient(patient), "change": "consent"})
    session.commit()
    return consent


def _accesses(
    session: Session, patient_id: int, limit: int | None = None, before: int | None = None
) -> list[tuple[int, AccessEntry]]:
    """Rows about the patient written by someone else, newest first: `limit` of them older than row `before`, or all
    (the export)."""
    query = (
        select(AuditLog, User.full_name, User.role)
        .outerjoin(User, User.id == AuditLog.user_id)
        .where(
            AuditLog.subject_id == patient_id,
            or_(AuditLog.user_id.is_(None), AuditLog.user_id != patient_id),
        )
        .order_by(AuditLog.id.desc())
    )
    if before is not None:
        query = query.where(AuditLog.id < before)
    if limit:
        query = query.limit(limit)
    return [
        (
            row.id,
            AccessEntry(
                at=row.at,
                who_id=row.user_id,
                who_name=name,
                who_role=role,
                action=row.action,
                exam_id=row.exam_id,
                outcome=row.outcome,
                client_ip=row.client_ip,
            ),
        )
        for row, name, role in session.execute(query)
    ]


def access_page(
    session: Session, request: Request, patient_id: int, limit: int, cursor: str | None
) -> tuple[list[AccessEntry], str | None]:
    """Who read or changed the patient's data (not the patient themself), `limit` entries from `cursor`
    (pagination.start), and the next page's cursor."""
    after = pagination.start(request, "me/access-log", patient_id, cursor, (int,))
    rows = _accesses(session, patient_id, limit + 1, after[0] if after else None)
    following = pagination.next_cursor(request, "me/access-log", patient_id, rows, limit, lambda row: [row[0]])
    return [entry for _, entry in rows[:limit]], following


def _download_url(s3: BaseClient, settings: Settings, exam: Exam) -> str | None:
    if exam.status != "ready" or not exam.result_key:
        return None
    return s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": settings.storage.bucket, "Key": exam.result_key},
        ExpiresIn=settings.storage.download_url_seconds,
    )


def export(session: Session, request: Request, settings: Settings, s3: BaseClient, patient_id: int) -> PatientExport:
    """Everything the clinic holds about the patient (LGPD art. 18 II and V); the export itself is audited."""
    patient = session.get_one(User, patient_id)
    exams = session.scalars(select(Exam).where(Exam.patient_id == patient_id).order_by(Exam.id))
    document = PatientExport(
        exported_at=datetime.now(UTC),
        account=profile_out(session, patient, settings),
        consents=[ConsentOut.model_validate(c) for c in consents(session, patient_id)],
        appointments=[
            AppointmentOut.model_validate(a)
            for a in session.scalars(
                select(Appointment).where(Appointment.patient_id == patient_id).order_by(Appointment.starts_at)
            )
        ],
        exams=[
            ExportedExam(**ExamOut.model_validate(e).model_dump(), download_url=_download_url(s3, settings, e))
            for e in exams
        ],
        download_expires_in=settings.storage.download_url_seconds,
        access_log=[entry for _, entry in _accesses(session, patient_id)],
    )
    audit(session, request, patient_id, "data.export", "granted")
    session.commit()
    return document


def _years_later(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February into a common year
        return day.replace(year=day.year + years, day=28)


def _last_entry(session: Session, patient: User, now: datetime) -> datetime:
    """The record's last entry: its latest past appointment or exam; the account's creation if it has neither."""
    last_visit = session.scalar(
        select(func.max(Appointment.starts_at)).where(
            Appointment.patient_id == patient.id, Appointment.starts_at <= now, Appointment.status != "cancelled"
        )
    )
    last_exam = session.scalar(select(func.max(Exam.created_at)).where(Exam.patient_id == patient.id))
    entries = [moment for moment in (last_visit, last_exam) if moment is not None]
    return max(entries) if entries else patient.created_at


def erase(session: Session, request: Request, settings: Settings, patient_id: int, password: str) -> ErasureOut:
    """Deletes the patient's account (LGPD art. 18 VI): contact data and login are erased, future appointments
    cancelled; the medical record is kept, marked with the date until which the law requires it (art. 16 I; Lei
    13.787/2018 art. 6). The request and its outcome are audited; the account's tokens and portal sessions end.
    WrongPassword (audited as denied) unless `password` is the account's; 429 after as many wrong ones as sign-in
    allows."""
    patient = session.scalars(select(User).where(User.id == patient_id).with_for_update()).one()
    if not password_guessed(session, request.app.state.login_throttle, client_of(request), patient, password):
        audit(session, request, patient_id, "account.erasure", "denied")
        session.commit()
        raise WrongPassword()
    # The request is on record whatever happens to the erasure that follows.
    audit(session, request, patient_id, "account.erasure", "requested")
    session.commit()

    patient = session.scalars(select(User).where(User.id == patient_id).with_for_update()).one()
    now = datetime.now(UTC)
    retained_until = _years_later(_last_entry(session, patient, now).date(), settings.privacy.record_retention_years)
    farewell = {**outbox.recipient(patient), "retained_until": retained_until.isoformat()}
    session.execute(
        update(Appointment)
        .where(Appointment.patient_id == patient.id, Appointment.starts_at > now, Appointment.status != "cancelled")
        .values(status="cancelled", cancelled_at=now, cancelled_by=patient.id)
    )
    profile = session.get(PatientProfile, patient.id)
    if profile:
        profile.phone = profile.emergency_contact_name = profile.emergency_contact_phone = None
    # Emails to the old address, sent or not, carry it and the name: they go (the farewell is added after).
    session.execute(delete(OutboxEvent).where(OutboxEvent.payload["recipient_email"].as_string() == patient.email))
    patient.email = f"erased-{patient.id}@erased.invalid"
    patient.password_hash = "!erased"  # no argon2 hash: no password ever matches
    patient.disabled_at = patient.erased_at = now  # disabled: its tokens are refused from the next request on
    revoke_tokens(patient)
    patient.retained_until = retained_until
    session.add(
        Consent(user_id=patient.id, notice_version=settings.privacy.notice_version, purposes=[], client_ip=None)
    )
    outbox.record(session, "account.deleted", farewell)
    audit(session, request, patient_id, "account.erasure", "completed")
    session.commit()
    return ErasureOut(erased_at=now, retained_until=retained_until, erased=ERASED, kept=KEPT)


def _audit_query(action: str | None, user_id: int | None, subject_id: int | None) -> Select:
    actor, subject = aliased(User), aliased(User)
    query = (
        select(AuditLog, actor.full_name, actor.role, subject.full_name)
        .outerjoin(actor, actor.id == AuditLog.user_id)
        .outerjoin(subject, subject.id == AuditLog.subject_id)
        .order_by(AuditLog.id.desc())
    )
    if action:
        query = query.where(AuditLog.action == action)
    if user_id:
        query = query.where(AuditLog.user_id == user_id)
    if subject_id:
        query = query.where(AuditLog.subject_id == subject_id)
    return query


def audit_page(
    session: Session,
    request: Request,
    caller: Principal,
    limit: int,
    cursor: str | None = None,
    action: str | None = None,
    user_id: int | None = None,
    subject_id: int | None = None,
) -> tuple[list[AuditRow], str | None]:
    """The clinic's audit log for staff and admins, newest first, `limit` rows from `cursor` (pagination.start), and
    the next page's cursor; optionally only one action, one actor (`user_id`) or one subject. The filters are part of
    the list: a cursor of one filtered walk is refused on another (a 422 naming `cursor`), rather than silently
    resuming a different list part-way. Reading it is itself a row (`audit.read`, with the filters and, past the
    first page, the row the page starts after): who looked at the log is on record. That row names no subject, so it
    is in no patient's access log: were each page logged per patient shown, every look would add rows naming the
    same patients again, and a patient's list of who saw their data would fill with staff reading the log rather
    than their record."""
    filters = {"action": action, "user_id": user_id, "subject_id": subject_id}
    scope = "&".join(["audit", *(f"{k}={v}" for k, v in filters.items() if v is not None)])
    query = _audit_query(action, user_id, subject_id).limit(limit + 1)
    after = pagination.start(request, scope, caller.id, cursor, (int,))
    if after:
        query = query.where(AuditLog.id < after[0])
    rows = session.execute(query).all()
    items = [
        AuditRow(
            id=row.id,
            at=row.at,
            user_id=row.user_id,
            user_name=actor_name,
            user_role=actor_role,
            action=row.action,
            outcome=row.outcome,
            subject_id=row.subject_id,
            subject_name=subject_name,
            exam_id=row.exam_id,
            client_ip=row.client_ip,
            request_id=row.request_id,
            detail=row.detail,
        )
        for row, actor_name, actor_role, subject_name in rows[:limit]
    ]
    # The decoded position, not the signed cursor: what a reader of the log needs, a few bytes.
    read = {**filters, "after_id": after[0] if after else None}
    session.add(
        AuditLog(
            user_id=caller.id,
            action="audit.read",
            outcome="granted",
            request_id=request_id.get(),
            client_ip=access_log.client_ip(request),
            detail={k: v for k, v in read.items() if v is not None},
        )
    )
    session.commit()
    return items, pagination.next_cursor(request, scope, caller.id, rows, limit, lambda row: [row[0].id])
