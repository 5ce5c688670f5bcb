from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from prometheus_client import Counter
from sqlalchemy import Integer, bindparam, case, func, insert, select, true, update
from sqlalchemy.orm import Session

from clinic_api import access_log, outbox, pagination
from clinic_api.db import Prepared
from clinic_api.deps import CurrentUser, HotPoolDep, S3Dep, SessionDep, SettingsDep, require_role
from clinic_api.errors import errors, existing_id, invalid, responses
from clinic_api.models import ID_MAX, Appointment, AuditLog, Exam, ExamResult, User
from clinic_api.schemas import (
    AuditEntry,
    DownloadLink,
    ExamCancellation,
    ExamCorrection,
    ExamOut,
    ExamResultOut,
    NewExam,
)
from clinic_api.security import ROLES, Principal
from clinic_api.settings import StorageSettings
from clinic_common.logging import request_id

log = logging.getLogger("clinic.exams")
router = APIRouter(tags=["exams"])
NOT_FOUND = "exam not found"
NO_PATIENT = "patient_id does not name a patient"
NO_DOCTOR = "doctor_id does not name a doctor"
NOT_PDF = "the result must be a PDF (Content-Type application/pdf, starting with %PDF-)"
TOO_LARGE = "the result is larger than {limit} bytes"
NOT_UPLOADED = "no result has been uploaded for this exam"
NOT_READY = "the result is not ready"
NOT_VERIFIED = "the result has not been checked yet (the file processor verifies each upload within seconds)"
QUARANTINED = "the uploaded result is not a readable PDF and was set aside; upload it again"
ALREADY_READY = "the result is ready: a ready exam is no longer corrected or cancelled"
EXAM_CANCELLED = "the exam is cancelled"
EXAMS_READY = Counter("clinic_exams_ready_total", "Exam results made available to patients")
DOWNLOADS = Counter("clinic_result_downloads_total", "Download links issued for exam results")
STAFF_OR_ADMIN = require_role("staff", "admin")


USER_ID = bindparam("user_id", type_=Integer)
EXAM_ID = bindparam("exam_id", type_=Integer)


def visible(role: str):
    """The exams a caller with `role` may see; the caller's id is bound as `user_id`."""
    if role == "patient":
        return Exam.patient_id == USER_ID
    if role == "doctor":  # the doctor's patients: an appointment or an exam with them
        return Exam.patient_id.in_(
            select(Appointment.patient_id)
            .where(Appointment.doctor_id == USER_ID)
            .union(select(Exam.patient_id).where(Exam.doctor_id == USER_ID))
        )
    return true()


def find(session: Session, exam_id: int, user: Principal, lock: bool = False) -> Exam:
    """The exam if `user` may see it, else 404; `lock` holds its row until commit, so that concurrent changes of its
    state happen one after the other."""
    query = select(Exam).where(Exam.id == existing_id(exam_id, NOT_FOUND), visible(user.role))
    exam = session.scalar(query.with_for_update(of=Exam) if lock else query, {"user_id": user.id})
    if exam is None:  # 404, not 403: another patient's exam ids are not confirmed to exist
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return exam


def audit(session: Session, user_id: int, action: str, exam: Exam, detail: dict[str, Any]) -> None:
    """A change to an exam, in the same audit log as the downloads (`GET /exams/{id}/audit`)."""
    session.add(
        AuditLog(
            user_id=user_id,
            action=action,
            exam_id=exam.id,
            outcome="granted",
            request_id=request_id.get(),
            detail=detail,
        )
    )


def notice(session: Session, exam: Exam) -> dict:
    patient = session.get_one(User, exam.patient_id)
    return {
        **outbox.recipient(patient),
        "exam_id": exam.id,
        "exam_type": exam.exam_type,
    }


@router.post("/exams", response_model=ExamOut, status_code=201, dependencies=[Depends(STAFF_OR_ADMIN)])
def create_exam(body: NewExam, session: SessionDep) -> Exam:
    patient = session.get(User, body.patient_id)
    if patient is None or patient.role != "patient":
        raise invalid("patient_id", NO_PATIENT)
    if body.doctor_id is not None and getattr(session.get(User, body.doctor_id), "role", None) != "doctor":
        raise invalid("doctor_id", NO_DOCTOR)
    exam = Exam(patient_id=patient.id, doctor_id=body.doctor_id, exam_type=body.exam_type, status="requested")
    session.add(exam)
    session.flush()
    outbox.record(session, "exam.created", notice(session, exam))
    session.commit()
    return exam


EXAM_COLUMNS = [Exam.__table__.c[name] for name in ExamOut.model_fields]
LIST_EXAMS = {
    role: Prepared.of(
        select(*EXAM_COLUMNS)
        .where(visible(role), Exam.id <= bindparam("through", ID_MAX, type_=Integer))
        .order_by(Exam.id.desc())
        .limit(bindparam("limit", type_=Integer))
    )
    for role in ROLES
}


def _download_audited(role: str) -> Prepared:
    """The exam's status and key, and the audit row of this attempt (granted only if ready), in one statement."""
    exam = (
        select(Exam.status, Exam.result_key, Exam.result_version_id, Exam.patient_id)
        .where(Exam.id == EXAM_ID, visible(role))
        .cte("exam")
    )
    audit = (
        insert(AuditLog)
        .values(
            at=func.now(),
            user_id=USER_ID,
            action="result.download",
            exam_id=EXAM_ID,
            request_id=bindparam("request_id"),
            outcome=case((select(exam.c.status).scalar_subquery() == "ready", "granted"), else_="denied"),
            subject_id=select(exam.c.patient_id).scalar_subquery(),  # the patient's access log
            client_ip=bindparam("client_ip"),
        )
        .cte("audit")
    )
    return Prepared.of(select(exam.c.status, exam.c.result_key, exam.c.result_version_id).add_cte(audit))


DOWNLOAD_AUDITED = {role: _download_audited(role) for role in ROLES}


@router.get("/exams", response_model=list[ExamOut], responses=pagination.NEXT_PAGE)
async def list_exams(
    request: Request,
    response: Response,
    pool: HotPoolDep,
    user: CurrentUser,
    limit: pagination.Limit = pagination.PAGE_DEFAULT,
    cursor: pagination.Cursor = None,
) -> list[dict]:
    """The exams the caller may see, newest first, a page at a time (the next page's URL in the `Link` header)."""
    # The patient's hot path: on the event loop, one statement compiled once, one round trip (bench/bench_api.py).
    # The token secret is read as deps reads it: one dependency less to solve.
    secret = request.app.state.settings.auth.jwt_secret.get_secret_value()
    through = ID_MAX
    if cursor is not None:
        (last_id,) = pagination.decode(secret, "exams", user.id, cursor, (int,))
        through = last_id - 1
    rows = await LIST_EXAMS[user.role].fetch(pool, user_id=user.id, through=through, limit=limit + 1)
    exams = rows[:limit]
    if user.role != "patient":  # a second round trip for doctors and staff only: their read is in the access log
        await access_log.record_async(pool, request, user.id, "exams.list", [e["patient_id"] for e in exams])
    if len(rows) > limit:
        pagination.link_next(request, response, pagination.encode(secret, "exams", user.id, [exams[-1]["id"]]))
    return exams


@router.get("/exams/{exam_id}", response_model=ExamOut, responses=responses(404))
def get_exam(exam_id: int, request: Request, session: SessionDep, user: CurrentUser) -> Exam:
    exam = find(session, exam_id, user)
    access_log.record(session, request, user.id, "exam.read", [exam.patient_id], exam_id=exam.id)
    session.commit()
    return exam


@router.put(
    "/exams/{exam_id}/result",
    response_model=ExamOut,
    dependencies=[Depends(STAFF_OR_ADMIN)],
    responses=responses(404, 413, 415),
)
async def upload_result(
    exam_id: int, request: Request, session: SessionDep, settings: SettingsDep, s3: S3Dep, user: CurrentUser
) -> Exam:
    """Streams the PDF to S3 (staff). Body: the PDF bytes, Content-Type application/pdf. The body is read on the event
    loop; the database and S3 calls block, so they run in the thread pool: on the loop they stalled every request on
    this worker, liveness included, for as long as the upload took."""
    exam = await run_in_threadpool(find, session, exam_id, user)
    if exam.status == "cancelled":
        raise HTTPException(status.HTTP_409_CONFLICT, EXAM_CANCELLED)
    storage = settings.storage
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/pdf":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, NOT_PDF)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > storage.max_upload_bytes:
            raise HTTPException(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, TOO_LARGE.format(limit=storage.max_upload_bytes)
            )
    if not body.startswith(b"%PDF-"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, NOT_PDF)
    return await run_in_threadpool(store_result, session, s3, storage, exam, bytes(body), user.id)


def store_result(
    session: Session, s3: BaseClient, storage: StorageSettings, exam: Exam, body: bytes, uploaded_by: int
) -> Exam:
    key = f"{storage.prefix}{exam.id}/{uuid.uuid4()}.pdf"
    # No ServerSideEncryption: the bucket's default (SSE-KMS under the clinic's own key) applies. Naming "aws:kms"
    # without a key id would make S3 use the AWS-managed aws/s3 key instead.
    stored = s3.put_object(Bucket=storage.bucket, Key=key, Body=body, ContentType="application/pdf")
    keep_result(session, uploaded_by, exam, key, stored.get("VersionId"), len(body))
    exam.result_sha256 = exam.result_checked_at = None
    # The file processor checks the PDF and records its SHA-256 (apps/file_processor); it tells the uploader when the
    # exam has no doctor.
    outbox.record(
        session,
        "file.uploaded",
        {**notice(session, exam), "size_bytes": len(body), "result_key": key, "uploaded_by": uploaded_by},
    )
    session.commit()
    return exam


def keep_result(session: Session, uploaded_by: int, exam: Exam, key: str, version_id: str | None, size: int) -> None:
    """Makes the upload the exam's current result. The result it replaces stays in exam_results and in the bucket
    (its own key and version: the lifecycle rule that expires noncurrent versions never reaches it), and both
    uploads are in the audit log."""
    now = datetime.now(UTC)
    replaced = session.scalars(
        update(ExamResult)
        .where(ExamResult.exam_id == exam.id, ExamResult.replaced_at.is_(None))
        .values(replaced_at=now)
        .returning(ExamResult.version_id)
    ).all()
    session.add(
        ExamResult(
            exam_id=exam.id,
            result_key=key,
            version_id=version_id,
            size_bytes=size,
            uploaded_by=uploaded_by,
            uploaded_at=now,
        )
    )
    exam.result_key, exam.result_version_id, exam.status = key, version_id, "uploaded"
    detail = {"key": key, "version_id": version_id, "size_bytes": size, "replaces_version_ids": list(replaced)}
    audit(session, uploaded_by, "result.replace" if replaced else "result.upload", exam, detail)


@router.post(
    "/exams/{exam_id}/ready",
    response_model=ExamOut,
    dependencies=[Depends(STAFF_OR_ADMIN)],
    responses=responses(404, 409),
)
def mark_ready(exam_id: int, session: SessionDep, settings: SettingsDep, s3: S3Dep, user: CurrentUser) -> Exam:
    exam = find(session, exam_id, user, lock=True)  # a second request waits, then sees "ready": one event
    if exam.status == "ready":
        return exam
    if exam.status == "quarantined":
        raise HTTPException(status.HTTP_409_CONFLICT, QUARANTINED)
    if exam.status == "uploaded":
        raise HTTPException(status.HTTP_409_CONFLICT, NOT_VERIFIED)
    if exam.status == "cancelled":
        raise HTTPException(status.HTTP_409_CONFLICT, EXAM_CANCELLED)
    storage = settings.storage
    try:
        if not exam.result_key:
            raise LookupError
        s3.head_object(Bucket=storage.bucket, Key=exam.result_key)
    except (LookupError, ClientError):
        raise HTTPException(status.HTTP_409_CONFLICT, NOT_UPLOADED) from None
    exam.status = "ready"
    outbox.record(session, "exam.completed", notice(session, exam))
    outbox.record(session, "exam.result.ready", notice(session, exam))
    session.commit()
    EXAMS_READY.inc()
    return exam


@router.get("/exams/{exam_id}/download", response_model=DownloadLink, responses=responses(404, 409))
async def download_link(
    exam_id: int, request: Request, pool: HotPoolDep, settings: SettingsDep, s3: S3Dep, user: CurrentUser
) -> DownloadLink:
    """A short-lived link to the result PDF; every attempt, granted or not, is audited. The lookup and the audit
    row are one statement (a data-modifying CTE), so a link is never issued without its audit row, in one round
    trip."""
    storage = settings.storage
    storable = 1 <= exam_id <= ID_MAX
    if not storable:  # audited all the same, with no exam id (the column cannot hold it); the id goes to the log
        log.warning("download of an exam id out of range", extra={"exam_id": str(exam_id)[:40]})
    found = await DOWNLOAD_AUDITED[user.role].fetch(
        pool,
        user_id=user.id,
        exam_id=exam_id if storable else None,
        request_id=request_id.get(),
        client_ip=access_log.client_ip(request),
    )
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    if found[0]["status"] != "ready":
        raise HTTPException(status.HTTP_409_CONFLICT, NOT_READY)
    # Signing is CPU only, so it stays on the event loop. The one exception is botocore renewing expiring
    # credentials (IRSA web identity): a call to STS, about once an hour.
    params = {"Bucket": storage.bucket, "Key": found[0]["result_key"]}
    if found[0]["result_version_id"]:  # that very version, whatever is written under the key later
        params["VersionId"] = found[0]["result_version_id"]
    url = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=storage.download_url_seconds)
    DOWNLOADS.inc()
    return DownloadLink(url=url, expires_in=storage.download_url_seconds)


STAFF_ERRORS = errors(
    r401="missing, invalid or expired token",
    r403="only staff and admins",
    r404="exam not found",
    r422="invalid request: the fields at fault",
)


@router.patch(
    "/exams/{exam_id}",
    response_model=ExamOut,
    dependencies=[Depends(STAFF_OR_ADMIN)],
    responses={
        **STAFF_ERRORS,
        **errors(r409="the result is ready, or the exam is cancelled", r422="nothing to correct, or an unknown doctor"),
    },
)
def correct_exam(exam_id: int, body: ExamCorrection, session: SessionDep, user: CurrentUser) -> Exam:
    """Corrects the exam's type or requesting doctor until its result is ready. The audit log keeps both values."""
    exam = find(session, exam_id, user, lock=True)
    if exam.status == "ready":
        raise HTTPException(status.HTTP_409_CONFLICT, ALREADY_READY)
    if exam.status == "cancelled":
        raise HTTPException(status.HTTP_409_CONFLICT, EXAM_CANCELLED)
    changes: dict[str, Any] = {}
    if "doctor_id" in body.model_fields_set and body.doctor_id != exam.doctor_id:
        if body.doctor_id is not None and getattr(session.get(User, body.doctor_id), "role", None) != "doctor":
            raise invalid("doctor_id", NO_DOCTOR)
        changes["doctor_id"] = {"from": exam.doctor_id, "to": body.doctor_id}
        exam.doctor_id = body.doctor_id
    if body.exam_type is not None and body.exam_type != exam.exam_type:
        changes["exam_type"] = {"from": exam.exam_type, "to": body.exam_type}
        exam.exam_type = body.exam_type
    if changes:
        audit(session, user.id, "exam.correct", exam, changes)
        session.commit()
    return exam


@router.post(
    "/exams/{exam_id}/cancel",
    response_model=ExamOut,
    dependencies=[Depends(STAFF_OR_ADMIN)],
    responses={**STAFF_ERRORS, **errors(r409="the result is ready", r422="no reason")},
)
def cancel_exam(exam_id: int, body: ExamCancellation, session: SessionDep, user: CurrentUser) -> Exam:
    """Cancels the exam with a reason the patient receives by email. An uploaded result stays stored (and listed in
    its history); a cancelled exam takes no upload and is never made ready. Cancelling twice changes nothing."""
    exam = find(session, exam_id, user, lock=True)
    if exam.status == "cancelled":
        return exam
    if exam.status == "ready":
        raise HTTPException(status.HTTP_409_CONFLICT, ALREADY_READY)
    exam.status, exam.cancel_reason = "cancelled", body.reason
    exam.cancelled_at, exam.cancelled_by = datetime.now(UTC), user.id
    audit(session, user.id, "exam.cancel", exam, {"reason": body.reason})
    outbox.record(session, "exam.cancelled", {**notice(session, exam), "reason": body.reason})
    session.commit()
    return exam


@router.get(
    "/exams/{exam_id}/results",
    response_model=list[ExamResultOut],
    dependencies=[Depends(STAFF_OR_ADMIN)],
    responses=STAFF_ERRORS,
)
def result_history(exam_id: int, session: SessionDep, user: CurrentUser) -> list[ExamResult]:
    """Every result file uploaded for the exam, oldest first; the current one has no `replaced_at`."""
    exam = find(session, exam_id, user)
    return list(session.scalars(select(ExamResult).where(ExamResult.exam_id == exam.id).order_by(ExamResult.id)))


@router.get(
    "/exams/{exam_id}/audit",
    response_model=list[AuditEntry],
    dependencies=[Depends(STAFF_OR_ADMIN)],
    responses=STAFF_ERRORS,
)
def exam_audit(exam_id: int, session: SessionDep, user: CurrentUser) -> list[AuditLog]:
    """The exam's audit trail, oldest first: uploads and replacements (with object versions), corrections,
    cancellation, and every download attempt."""
    exam = find(session, exam_id, user)
    return list(session.scalars(select(AuditLog).where(AuditLog.exam_id == exam.id).order_by(AuditLog.id)))
