"""A patient's rights under the LGPD (Lei 13.709/2018, art. 18): their consents, who accessed their data, a copy of
all of it, and erasure of what the law lets go (medical records are kept: see the README, "Erasure")."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, get_args

from botocore.client import BaseClient
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from clinic_api import access_log, outbox
from clinic_api.deps import CurrentUser, S3Dep, SessionDep, SettingsDep, require_role
from clinic_api.errors import errors
from clinic_api.models import Appointment, AuditLog, Consent, Exam, OutboxEvent, PatientProfile, User
from clinic_api.routes.accounts import check_notice, record_consent
from clinic_api.routes.profiles import profile_out
from clinic_api.schemas import (
    AccessEntry,
    AccessLogPage,
    AppointmentOut,
    ConsentIn,
    ConsentOut,
    ErasureOut,
    ErasureRequest,
    ExamOut,
    ExportedExam,
    PatientExport,
    PrivacyNotice,
    Purpose,
)
from clinic_api.security import revoke_tokens, verify_password
from clinic_api.settings import Settings
from clinic_common.logging import request_id

router = APIRouter(tags=["privacy"])
PATIENT = require_role("patient")
WRONG_PASSWORD = "password is wrong"
ERASED = ["email", "password", "phone", "emergency contact", "optional consents", "pending emails"]
KEPT = [
    "medical record: appointments, exams and their result files",
    "the record's identification: full name, date of birth, CPF (encrypted)",
    "consent history and the audit log (proof of what was agreed and done)",
]
ERASURE_ERRORS = errors(r400=WRONG_PASSWORD)


def audit(session: Session, request: Request, user_id: int, action: str, outcome: str) -> None:
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


@router.get("/privacy/notice", response_model=PrivacyNotice)
def notice(settings: SettingsDep) -> PrivacyNotice:
    """The privacy notice in force: its version (sign-up and consent changes name it) and the purposes it lists."""
    return PrivacyNotice(version=settings.privacy.notice_version, purposes=list(get_args(Purpose)))


@router.get("/me/consents", response_model=list[ConsentOut], dependencies=[Depends(PATIENT)])
def consents(session: SessionDep, user: CurrentUser) -> list[Consent]:
    """Every consent the patient gave, oldest first; the last one is in force."""
    return list(session.scalars(select(Consent).where(Consent.user_id == user.id).order_by(Consent.id)))


@router.post(
    "/me/consents",
    response_model=ConsentOut,
    status_code=201,
    dependencies=[Depends(PATIENT)],
    responses=errors(r422="notice_version is not the one in force, or care is missing"),
)
def change_consent(
    body: ConsentIn, request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> Consent:
    """Records the patient's choices as a new entry; earlier entries stay in the history."""
    check_notice(body.notice_version, settings)
    patient = session.get_one(User, user.id)
    consent = record_consent(session, patient, body.notice_version, body.purposes, request)
    outbox.record(session, "account.updated", {**outbox.recipient(patient), "change": "consent"})
    session.commit()
    return consent


def _accesses(session: Session, patient_id: int, limit: int | None = None, cursor: int | None = None):
    """Rows about the patient written by someone else, newest first."""
    query = (
        select(AuditLog, User.full_name, User.role)
        .outerjoin(User, User.id == AuditLog.user_id)
        .where(
            AuditLog.subject_id == patient_id,
            or_(AuditLog.user_id.is_(None), AuditLog.user_id != patient_id),
        )
        .order_by(AuditLog.id.desc())
    )
    if cursor:
        query = query.where(AuditLog.id <= cursor)
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


@router.get("/me/access-log", response_model=AccessLogPage, dependencies=[Depends(PATIENT)])
def my_access_log(
    session: SessionDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="next_cursor of the previous page")] = None,
) -> AccessLogPage:
    """Who read or changed the patient's data (not the patient themself): who, what, when, from where."""
    rows = _accesses(session, user.id, limit + 1, cursor)
    return AccessLogPage(
        items=[entry for _, entry in rows[:limit]], next_cursor=rows[limit][0] if rows[limit:] else None
    )


def _download_url(s3: BaseClient, settings: Settings, exam: Exam) -> str | None:
    if exam.status != "ready" or not exam.result_key:
        return None
    return s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": settings.storage.bucket, "Key": exam.result_key},
        ExpiresIn=settings.storage.download_url_seconds,
    )


@router.get("/me/export", response_model=PatientExport, dependencies=[Depends(PATIENT)])
def export(request: Request, session: SessionDep, settings: SettingsDep, s3: S3Dep, user: CurrentUser) -> PatientExport:
    """Everything the clinic holds about the patient, as one JSON document (LGPD art. 18 II and V); result files as
    presigned links valid for `download_expires_in` seconds. The export itself is audited."""
    patient = session.get_one(User, user.id)
    exams = session.scalars(select(Exam).where(Exam.patient_id == user.id).order_by(Exam.id))
    document = PatientExport(
        exported_at=datetime.now(UTC),
        account=profile_out(session, patient, settings),
        consents=[ConsentOut.model_validate(c) for c in consents(session, user)],
        appointments=[
            AppointmentOut.model_validate(a)
            for a in session.scalars(
                select(Appointment).where(Appointment.patient_id == user.id).order_by(Appointment.starts_at)
            )
        ],
        exams=[
            ExportedExam(**ExamOut.model_validate(e).model_dump(), download_url=_download_url(s3, settings, e))
            for e in exams
        ],
        download_expires_in=settings.storage.download_url_seconds,
        access_log=[entry for _, entry in _accesses(session, user.id)],
    )
    audit(session, request, user.id, "data.export", "granted")
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


@router.post("/me/erasure", response_model=ErasureOut, dependencies=[Depends(PATIENT)], responses=ERASURE_ERRORS)
def erase(
    body: ErasureRequest, request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> ErasureOut:
    """Deletes the patient's account (LGPD art. 18 VI): contact data and login are erased, future appointments
    cancelled; the medical record is kept, marked with the date until which the law requires it (art. 16 I; Lei
    13.787/2018 art. 6). The request and its outcome are audited; the account's tokens stop working."""
    patient = session.scalars(select(User).where(User.id == user.id).with_for_update()).one()
    if not verify_password(patient.password_hash, body.password):
        audit(session, request, user.id, "account.erasure", "denied")
        session.commit()
        raise HTTPException(status.HTTP_400_BAD_REQUEST, WRONG_PASSWORD)
    # The request is on record whatever happens to the erasure that follows.
    audit(session, request, user.id, "account.erasure", "requested")
    session.commit()

    patient = session.scalars(select(User).where(User.id == user.id).with_for_update()).one()
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
    audit(session, request, user.id, "account.erasure", "completed")
    session.commit()
    return ErasureOut(erased_at=now, retained_until=retained_until, erased=ERASED, kept=KEPT)
