"""What happens to an exam, whoever asks: the API's routes (clinic_api.routes.exams) and the portal's pages
(clinic_api.exams.pages) call these, so both refuse the same callers, check an upload the same way and write the same
audit and access-log rows. Errors are HTTPExceptions with the API's English detail; the pages turn them into
messages in the reader's language."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError
from fastapi import HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from prometheus_client import Counter
from sqlalchemy import Integer, bindparam, case, func, insert, select, true, update
from sqlalchemy.orm import Session

from clinic_api import access_log, outbox, pagination
from clinic_api.db import HotPool, Prepared
from clinic_api.errors import existing_id, invalid
from clinic_api.models import ID_MAX, Appointment, AuditLog, Exam, ExamResult, User
from clinic_api.routes.profiles import cares_for
from clinic_api.schemas import DownloadLink, NewExam
from clinic_api.security import FORBIDDEN, ROLES, Principal
from clinic_api.settings import StorageSettings
from clinic_common.logging import request_id

log = logging.getLogger("clinic.exams")

NOT_FOUND = "exam not found"
NO_PATIENT = "patient_id does not name a patient"
NO_DOCTOR = "doctor_id does not name a doctor"
ORDERED_AS_SELF = "a doctor orders an exam as its doctor: doctor_id must be the doctor's own id, or left out"
NOT_THEIR_EXAM = "a doctor changes only the exams they ordered (the exam's doctor_id)"
NOT_PDF = "the result must be a PDF (Content-Type application/pdf, starting with %PDF-)"
TOO_LARGE = "the result is larger than {limit} bytes"
NOT_UPLOADED = "no result has been uploaded for this exam"
NOT_READY = "the result is not ready"
NOT_VERIFIED = "the result has not been checked yet (the file processor verifies each upload within seconds)"
QUARANTINED = "the uploaded result is not a readable PDF and was set aside; upload it again"
ALREADY_READY = "the result is ready: a ready exam is no longer corrected or cancelled"
EXAM_CANCELLED = "the exam is cancelled"
PDF_TYPE = "application/pdf"
PDF_MAGIC = b"%PDF-"
EXAMS_READY = Counter("clinic_exams_ready_total", "Exam results made available to patients")
DOWNLOADS = Counter("clinic_result_downloads_total", "Download links issued for exam results")

ORDERING_ROLES = ("doctor", "staff", "admin")
"""Who orders exams, uploads their results and releases them: staff and admins for any exam, a doctor for their
own patients (profiles.cares_for) and the exams they ordered."""

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


def may_change(user: Principal, exam: Exam) -> bool:
    """Whether `user` may upload the exam's result and release it (the exam is one they can see)."""
    if user.role == "doctor":
        return exam.doctor_id == user.id
    return user.role in ORDERING_ROLES


def find_to_change(session: Session, exam_id: int, user: Principal, lock: bool = False) -> Exam:
    """`find`, then 403 unless `user` may change the exam: a doctor sees all their patients' exams, but changes only
    the ones they ordered."""
    exam = find(session, exam_id, user, lock)
    if not may_change(user, exam):
        raise HTTPException(status.HTTP_403_FORBIDDEN, NOT_THEIR_EXAM if user.role == "doctor" else FORBIDDEN)
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


def order_exam(session: Session, body: NewExam, user: Principal) -> Exam:
    """Creates the exam and tells the patient. Staff and admins order for any patient, naming any doctor or none; a
    doctor for one of their patients, as the exam's doctor."""
    if user.role not in ORDERING_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, FORBIDDEN)
    patient = session.get(User, body.patient_id)
    # A doctor is told of no patient they do not treat, exactly as of one that does not exist.
    if (
        patient is None
        or patient.role != "patient"
        or (user.role == "doctor" and not cares_for(session, user.id, patient.id))
    ):
        raise invalid("patient_id", NO_PATIENT)
    doctor_id = body.doctor_id
    if user.role == "doctor":
        if doctor_id not in (None, user.id):
            raise invalid("doctor_id", ORDERED_AS_SELF)
        doctor_id = user.id
    elif doctor_id is not None and getattr(session.get(User, doctor_id), "role", None) != "doctor":
        raise invalid("doctor_id", NO_DOCTOR)
    exam = Exam(patient_id=patient.id, doctor_id=doctor_id, exam_type=body.exam_type, status="requested")
    session.add(exam)
    session.flush()
    outbox.record(session, "exam.created", notice(session, exam))
    session.commit()
    return exam


def read_exam(session: Session, request: Request, exam_id: int, user: Principal) -> Exam:
    """The exam, its read in the patient's access log (anyone's but the patient's own)."""
    exam = find(session, exam_id, user)
    access_log.record(session, request, user.id, "exam.read", [exam.patient_id], exam_id=exam.id)
    session.commit()
    return exam


# --- the result file --------------------------------------------------------------------------------------------


def is_pdf_type(content_type: str | None) -> bool:
    """Whether a Content-Type (a request's, or a form part's) names a PDF, parameters aside."""
    return (content_type or "").split(";")[0].strip().lower() == PDF_TYPE


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The bytes of `chunks`, refused with 413 as soon as they pass `limit` (the rest is never read)."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, TOO_LARGE.format(limit=limit))
    return bytes(body)


async def accept_result(
    session: Session,
    s3: BaseClient,
    storage: StorageSettings,
    exam_id: int,
    user: Principal,
    content_type: str | None,
    chunks: AsyncIterator[bytes],
) -> Exam:
    """Checks an uploaded result and stores it: 404/403 for an exam the caller may not change, 409 once cancelled,
    415 unless a PDF (its declared type, then its first bytes), 413 past `storage.max_upload_bytes`. The body is read
    on the event loop; the database and S3 calls block, so they run in the thread pool: on the loop they stalled every
    request on this worker, liveness included, for as long as the upload took."""
    exam = await run_in_threadpool(find_to_change, session, exam_id, user)
    if exam.status == "cancelled":
        raise HTTPException(status.HTTP_409_CONFLICT, EXAM_CANCELLED)
    if not is_pdf_type(content_type):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, NOT_PDF)
    body = await read_limited(chunks, storage.max_upload_bytes)
    if not body.startswith(PDF_MAGIC):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, NOT_PDF)
    return await run_in_threadpool(store_result, session, s3, storage, exam, body, user.id)


def store_result(
    session: Session, s3: BaseClient, storage: StorageSettings, exam: Exam, body: bytes, uploaded_by: int
) -> Exam:
    key = f"{storage.prefix}{exam.id}/{uuid.uuid4()}.pdf"
    # No ServerSideEncryption: the bucket's default (SSE-KMS under the clinic's own key) applies. Naming "aws:kms"
    # without a key id would make S3 use the AWS-managed aws/s3 key instead.
    stored = s3.put_object(Bucket=storage.bucket, Key=key, Body=body, ContentType=PDF_TYPE)
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


def release(session: Session, s3: BaseClient, storage: StorageSettings, exam_id: int, user: Principal) -> Exam:
    """Makes a verified result available to the patient and tells them; releasing a ready exam again changes
    nothing and tells nobody twice. 409 while the file processor has not verified it."""
    exam = find_to_change(session, exam_id, user, lock=True)  # a second request waits, then sees "ready": one event
    if exam.status == "ready":
        return exam
    if exam.status == "quarantined":
        raise HTTPException(status.HTTP_409_CONFLICT, QUARANTINED)
    if exam.status == "uploaded":
        raise HTTPException(status.HTTP_409_CONFLICT, NOT_VERIFIED)
    if exam.status == "cancelled":
        raise HTTPException(status.HTTP_409_CONFLICT, EXAM_CANCELLED)
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


async def download_link(
    pool: HotPool, request: Request, s3: BaseClient, storage: StorageSettings, exam_id: int, user: Principal
) -> DownloadLink:
    """A short-lived link to the result PDF; every attempt, granted or not, is audited. The lookup and the audit
    row are one statement (a data-modifying CTE), so a link is never issued without its audit row, in one round
    trip. 404 for an exam the caller may not see, 409 until it is ready."""
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


# --- lists for the portal ---------------------------------------------------------------------------------------

PAGE_SIZE = 50
PORTAL_EXAMS = "portal/exams"  # its own scope: a cursor of the API's list is refused here, and the reverse


def exam_page(
    session: Session, request: Request, user: Principal, cursor: str | None = None, limit: int | None = None
) -> tuple[list[tuple[Exam, str]], str | None]:
    """The exams `user` may see (with their patient's name), newest first, from `cursor` (pagination.start: a 422
    naming `cursor` when it is not one this list gave `user`); and the next page's cursor (None on the last). Keyset
    paging on the id, as `GET /exams`. The read is in each listed patient's access log, as the API's list writes it."""
    limit = limit or PAGE_SIZE
    query = (
        select(Exam, User.full_name)
        .join(User, User.id == Exam.patient_id)
        .where(visible(user.role))
        .order_by(Exam.id.desc())
        .limit(limit + 1)
    )
    if after := pagination.start(request, PORTAL_EXAMS, user.id, cursor, (int,)):
        query = query.where(Exam.id < after[0])
    rows = [(exam, name) for exam, name in session.execute(query, {"user_id": user.id})]
    page = rows[:limit]
    access_log.record(session, request, user.id, "exams.list", [exam.patient_id for exam, _ in page])
    session.commit()
    return page, pagination.next_cursor(request, PORTAL_EXAMS, user.id, rows, limit, lambda row: [row[0].id])


def patient_exams(session: Session, patient_id: int, doctor: Principal) -> list[Exam]:
    """The exams `doctor` ordered for the patient, newest first (the caller writes the access log)."""
    query = select(Exam).where(Exam.patient_id == patient_id, Exam.doctor_id == doctor.id, visible(doctor.role))
    return list(session.scalars(query.order_by(Exam.id.desc()), {"user_id": doctor.id}))
