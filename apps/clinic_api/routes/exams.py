from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlalchemy import Integer, bindparam, select
from sqlalchemy.orm import Session

from clinic_api import access_log, outbox, pagination
from clinic_api.db import Prepared
from clinic_api.deps import CurrentUser, HotPoolDep, S3Dep, SessionDep, SettingsDep, require_role
from clinic_api.errors import errors, invalid, responses
from clinic_api.exams import service
from clinic_api.exams.service import ALREADY_READY, EXAM_CANCELLED, NO_DOCTOR, audit, find, notice, visible
from clinic_api.models import ID_MAX, AuditLog, Exam, ExamResult, User
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

router = APIRouter(tags=["exams"])
STAFF_OR_ADMIN = require_role("staff", "admin")
ORDERING = require_role(*service.ORDERING_ROLES)


@router.post(
    "/exams",
    response_model=ExamOut,
    status_code=201,
    dependencies=[Depends(ORDERING)],
    responses=errors(r403="only doctors (for their patients), staff and admins order exams"),
)
def create_exam(body: NewExam, session: SessionDep, user: CurrentUser) -> Exam:
    """Staff and admins order for any patient, naming any doctor or none; a doctor for one of their patients (an
    appointment or an exam with them), as the exam's doctor."""
    return service.order_exam(session, body, user)


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
    through = ID_MAX
    if after := pagination.start(request, "exams", user.id, cursor, (int,)):
        through = after[0] - 1
    rows = await LIST_EXAMS[user.role].fetch(pool, user_id=user.id, through=through, limit=limit + 1)
    exams = rows[:limit]
    if user.role != "patient":  # a second round trip for doctors and staff only: their read is in the access log
        await access_log.record_async(pool, request, user.id, "exams.list", [e["patient_id"] for e in exams])
    following = pagination.next_cursor(request, "exams", user.id, rows, limit, lambda exam: [exam["id"]])
    pagination.link_next(request, response, following)
    return exams


@router.get("/exams/{exam_id}", response_model=ExamOut, responses=responses(404))
def get_exam(exam_id: int, request: Request, session: SessionDep, user: CurrentUser) -> Exam:
    return service.read_exam(session, request, exam_id, user)


@router.put(
    "/exams/{exam_id}/result",
    response_model=ExamOut,
    dependencies=[Depends(ORDERING)],
    responses=responses(403, 404, 409, 413, 415),
)
async def upload_result(
    exam_id: int, request: Request, session: SessionDep, settings: SettingsDep, s3: S3Dep, user: CurrentUser
) -> Exam:
    """Streams the PDF to S3 (staff; a doctor for the exams they ordered). Body: the PDF bytes, Content-Type
    application/pdf. The file processor then checks it (status `uploaded`, then `verified` or `quarantined`)."""
    content_type = request.headers.get("content-type")
    return await service.accept_result(session, s3, settings.storage, exam_id, user, content_type, request.stream())


@router.post(
    "/exams/{exam_id}/ready",
    response_model=ExamOut,
    dependencies=[Depends(ORDERING)],
    responses=responses(403, 404, 409),
)
def mark_ready(exam_id: int, session: SessionDep, settings: SettingsDep, s3: S3Dep, user: CurrentUser) -> Exam:
    """Releases a verified result to the patient (staff; a doctor for the exams they ordered)."""
    return service.release(session, s3, settings.storage, exam_id, user)


@router.get("/exams/{exam_id}/download", response_model=DownloadLink, responses=responses(404, 409))
async def download_link(
    exam_id: int, request: Request, pool: HotPoolDep, settings: SettingsDep, s3: S3Dep, user: CurrentUser
) -> DownloadLink:
    """A short-lived link to the result PDF; every attempt, granted or not, is audited."""
    return await service.download_link(pool, request, s3, settings.storage, exam_id, user)


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
    responses={**STAFF_ERRORS, **pagination.NEXT_PAGE},
)
def result_history(
    exam_id: int,
    request: Request,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    limit: pagination.Limit = pagination.PAGE_DEFAULT,
    cursor: pagination.Cursor = None,
) -> list[ExamResult]:
    """Every result file uploaded for the exam, newest first (the current one, with no `replaced_at`, heads the first
    page), a page at a time (the next page's URL in the `Link` header)."""
    exam = find(session, exam_id, user)
    return _exam_page(request, response, session, user, exam, ExamResult, "results", limit, cursor)


@router.get(
    "/exams/{exam_id}/audit",
    response_model=list[AuditEntry],
    dependencies=[Depends(STAFF_OR_ADMIN)],
    responses={**STAFF_ERRORS, **pagination.NEXT_PAGE},
)
def exam_audit(
    exam_id: int,
    request: Request,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    limit: pagination.Limit = pagination.PAGE_DEFAULT,
    cursor: pagination.Cursor = None,
) -> list[AuditLog]:
    """The exam's audit trail, newest first (what an auditor reads first), a page at a time (the next page's URL in
    the `Link` header): uploads and replacements (with object versions), corrections, cancellation, and every
    download attempt."""
    exam = find(session, exam_id, user)
    return _exam_page(request, response, session, user, exam, AuditLog, "audit", limit, cursor)


def _exam_page(
    request: Request,
    response: Response,
    session: Session,
    user: Principal,
    exam: Exam,
    model: type[AuditLog] | type[ExamResult],
    name: str,
    limit: int,
    cursor: str | None,
) -> list[Any]:
    """A page of the exam's `model` rows, newest first by id (rows only ever appended: the id is their order). The
    list's scope names the exam: a cursor of one exam's list is refused on another's."""
    scope = f"exams/{exam.id}/{name}"
    query = select(model).where(model.exam_id == exam.id).order_by(model.id.desc()).limit(limit + 1)
    if after := pagination.start(request, scope, user.id, cursor, (int,)):
        query = query.where(model.id < after[0])
    rows = list(session.scalars(query))
    pagination.link_next(request, response, pagination.next_cursor(request, scope, user.id, rows, limit, _id))
    return rows[:limit]


def _id(row: Any) -> list[Any]:  # an AuditLog or ExamResult row
    return [row.id]
