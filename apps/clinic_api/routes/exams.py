from __future__ import annotations

import uuid

from botocore.exceptions import ClientError
from fastapi import APIRouter, HTTPException, Request, status
from prometheus_client import Counter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clinic_api import outbox
from clinic_api.db import SessionDep
from clinic_api.models import Appointment, AuditLog, Exam, User
from clinic_api.schemas import DownloadLink, ExamOut, NewExam
from clinic_api.security import CurrentUser, Principal, require
from clinic_common.logging import request_id

router = APIRouter(tags=["exams"])
NOT_FOUND = "exam not found"
NO_PATIENT = "patient_id does not name a patient"
NO_DOCTOR = "doctor_id does not name a doctor"
NOT_PDF = "the result must be a PDF (Content-Type application/pdf, starting with %PDF-)"
TOO_LARGE = "the result is larger than {limit} bytes"
NOT_UPLOADED = "no result has been uploaded for this exam"
NOT_READY = "the result is not ready"
EXAMS_READY = Counter("clinic_exams_ready_total", "Exam results made available to patients")
DOWNLOADS = Counter("clinic_result_downloads_total", "Download links issued for exam results")


def visible(user: Principal):
    if user.role == "patient":
        return Exam.patient_id == user.id
    if user.role == "doctor":  # the doctor's patients: an appointment or an exam with them
        return Exam.patient_id.in_(select(Appointment.patient_id).where(Appointment.doctor_id == user.id)
                                   .union(select(Exam.patient_id).where(Exam.doctor_id == user.id)))
    return True


def find(session: Session, exam_id: int, user: Principal) -> Exam:
    exam = session.scalar(select(Exam).where(Exam.id == exam_id, visible(user)))
    if exam is None:  # 404, not 403: another patient's exam ids are not confirmed to exist
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return exam


def notice(session: Session, exam: Exam) -> dict:
    patient = session.get(User, exam.patient_id)
    return {"recipient_email": patient.email, "recipient_name": patient.full_name, "exam_id": exam.id,
            "exam_type": exam.exam_type}


@router.post("/exams", response_model=ExamOut, status_code=201)
def create_exam(body: NewExam, session: SessionDep, user: CurrentUser) -> Exam:
    require(user, "staff", "admin")
    patient = session.get(User, body.patient_id)
    if patient is None or patient.role != "patient":
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, NO_PATIENT)
    if body.doctor_id is not None and getattr(session.get(User, body.doctor_id), "role", None) != "doctor":
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, NO_DOCTOR)
    exam = Exam(patient_id=patient.id, doctor_id=body.doctor_id, exam_type=body.exam_type, status="requested")
    session.add(exam)
    session.flush()
    outbox.record(session, "exam.created", notice(session, exam))
    session.commit()
    return exam


EXAM_COLUMNS = [Exam.__table__.c[name] for name in ExamOut.model_fields]


@router.get("/exams", response_model=list[ExamOut])
def list_exams(request: Request, user: CurrentUser) -> list[dict]:
    # The patient's hot path: one round trip, plain rows, no ORM identity map (bench/bench_api.py).
    with request.app.state.engine.connect() as connection:
        return [dict(row) for row in connection.execute(
            select(*EXAM_COLUMNS).where(visible(user)).order_by(Exam.id.desc())).mappings()]


@router.get("/exams/{exam_id}", response_model=ExamOut)
def get_exam(exam_id: int, session: SessionDep, user: CurrentUser) -> Exam:
    return find(session, exam_id, user)


@router.put("/exams/{exam_id}/result", response_model=ExamOut)
async def upload_result(exam_id: int, request: Request, session: SessionDep, user: CurrentUser) -> Exam:
    """Streams the PDF to S3 (staff). Body: the PDF bytes, Content-Type application/pdf."""
    require(user, "staff", "admin")
    exam = find(session, exam_id, user)
    settings = request.app.state.settings.storage
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/pdf":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, NOT_PDF)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > settings.max_upload_bytes:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                                TOO_LARGE.format(limit=settings.max_upload_bytes))
    if not body.startswith(b"%PDF-"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, NOT_PDF)
    key = f"{settings.prefix}{exam.id}/{uuid.uuid4()}.pdf"
    request.app.state.s3.put_object(Bucket=settings.bucket, Key=key, Body=bytes(body), ContentType="application/pdf",
                                    ServerSideEncryption="aws:kms")
    exam.result_key, exam.status = key, "uploaded"
    outbox.record(session, "file.uploaded", {**notice(session, exam), "size_bytes": len(body)})
    session.commit()
    return exam


@router.post("/exams/{exam_id}/ready", response_model=ExamOut)
def mark_ready(exam_id: int, request: Request, session: SessionDep, user: CurrentUser) -> Exam:
    require(user, "staff", "admin")
    exam = find(session, exam_id, user)
    if exam.status == "ready":
        return exam
    storage = request.app.state.settings.storage
    try:
        if not exam.result_key:
            raise LookupError
        request.app.state.s3.head_object(Bucket=storage.bucket, Key=exam.result_key)
    except (LookupError, ClientError):
        raise HTTPException(status.HTTP_409_CONFLICT, NOT_UPLOADED) from None
    exam.status = "ready"
    outbox.record(session, "exam.completed", notice(session, exam))
    outbox.record(session, "exam.result.ready", notice(session, exam))
    session.commit()
    EXAMS_READY.inc()
    return exam


@router.get("/exams/{exam_id}/download", response_model=DownloadLink)
def download_link(exam_id: int, request: Request, user: CurrentUser) -> DownloadLink:
    """A short-lived link to the result PDF; every attempt, granted or not, is audited (in one transaction with
    the lookup: a link is never issued without its audit row)."""
    storage = request.app.state.settings.storage
    with request.app.state.engine.begin() as connection:
        exam = connection.execute(select(Exam.status, Exam.result_key)
                                  .where(Exam.id == exam_id, visible(user))).first()
        outcome = "granted" if exam is not None and exam.status == "ready" else "denied"
        connection.execute(AuditLog.__table__.insert().values(
            at=func.now(), user_id=user.id, action="result.download", exam_id=exam_id, outcome=outcome,
            request_id=request_id.get()))
    if exam is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    if outcome == "denied":
        raise HTTPException(status.HTTP_409_CONFLICT, NOT_READY)
    url = request.app.state.s3.generate_presigned_url(
        "get_object", Params={"Bucket": storage.bucket, "Key": exam.result_key},
        ExpiresIn=storage.download_url_seconds)
    DOWNLOADS.inc()
    return DownloadLink(url=url, expires_in=storage.download_url_seconds)
