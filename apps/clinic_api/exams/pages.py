"""The portal's exam pages. Patients: their exams and each one's status, and the result's download. Doctors: a
patient's appointments and exams with them, ordering an exam, uploading its result and releasing it once the file
processor has verified it.

Every page calls the functions the API's routes call (clinic_api.exams.service): the same authorization (another
patient's exam is a 404 page, as the API's 404), the same upload checks, the same audit and access-log rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from clinic_api import access_log, pagination
from clinic_api.appointments import service as appointments_service
from clinic_api.deps import HotPoolDep, S3Dep, SessionDep, SettingsDep
from clinic_api.errors import existing_id
from clinic_api.exams import service
from clinic_api.models import ID_MAX, Appointment, Exam, User
from clinic_api.routes.profiles import NO_PATIENT, find_patient
from clinic_api.schemas import ExamType, NewExam
from clinic_api.web.errors import BAD_PAGE_LINK
from clinic_api.web.forms import read_form
from clinic_api.web.i18n import N_, Translator, translator
from clinic_api.web.responses import redirect
from clinic_api.web.session import SignedIn, WebUser, web_role
from clinic_api.web.templating import render

router = APIRouter(include_in_schema=False)
PATIENT_OR_DOCTOR = [Depends(web_role("patient", "doctor"))]
DOCTOR = [Depends(web_role("doctor"))]
PageId = Annotated[int, Query(ge=1, le=ID_MAX)]
RESULT_FIELD = "result"
CHUNK_BYTES = 64 * 1024

# What each status means to whom: the doctor follows the file processor's steps; the patient only waits for the
# result (a refused file is the clinic's matter, not news for them).
DOCTOR_STATUS = {
    "requested": N_("Ordered, waiting for the result"),
    "uploaded": N_("Result uploaded, being checked"),
    "verified": N_("Result checked, ready to release"),
    "quarantined": N_("Result file refused: upload it again"),
    "ready": N_("Result released to the patient"),
    "cancelled": N_("Cancelled"),
}
PATIENT_STATUS = {
    "requested": N_("Waiting for the result"),
    "uploaded": N_("Waiting for the result"),
    "verified": N_("Waiting for the result"),
    "quarantined": N_("Waiting for the result"),
    "ready": N_("Result ready"),
    "cancelled": N_("Cancelled"),
}


def status_text(t: Translator, role: str, status: str) -> str:
    labels = DOCTOR_STATUS if role == "doctor" else PATIENT_STATUS
    return t.gettext(labels.get(status, status))


def upload_problem(t: Translator, error: HTTPException, limit: int) -> str:
    """An upload refused by service.accept_result, as the message next to the file field."""
    if error.status_code == 413:
        return t.gettext("The file is larger than %(size)s MB. Send a smaller PDF.", size=f"{limit / 2**20:g}")
    if error.status_code == 409:
        return t.gettext("This exam is cancelled: it takes no result.")
    return t.gettext("The result must be a PDF file. Choose the PDF the lab sent.")


def release_problem(t: Translator, error: HTTPException) -> str:
    return {
        service.NOT_VERIFIED: t.gettext("The file is still being checked. Wait a few seconds and try again."),
        service.QUARANTINED: t.gettext("The file was refused as not a readable PDF. Upload the result again."),
        service.NOT_UPLOADED: t.gettext("No result has been uploaded for this exam yet."),
        service.EXAM_CANCELLED: t.gettext("This exam is cancelled: it takes no result."),
    }.get(str(error.detail), t.gettext("The result could not be released."))


# --- lists ------------------------------------------------------------------------------------------------------


@router.get("/portal/exams", name="exams_list", dependencies=PATIENT_OR_DOCTOR)
def exams_list(request: Request, db: SessionDep, user: WebUser, cursor: pagination.Cursor = None) -> Response:
    """The patient's exams, or the doctor's patients' exams (each patient's access log has the doctor's read),
    newest first, a page at a time (`cursor`: the "Older exams" link's, signed as the API's list cursors)."""
    context: dict[str, Any] = {"exams": [], "older": None, "page_error": None, "status_text": _status_text(request)}
    try:
        context["exams"], older = service.exam_page(db, request, user.principal, cursor)
    except RequestValidationError:  # only the cursor can be refused here: answered on the page, as every list page
        page_error = translator(request).gettext(BAD_PAGE_LINK)
        return render(request, "exams/list.html", {**context, "page_error": page_error}, 422)
    context["older"] = urlencode({"cursor": older}) if older else None
    return render(request, "exams/list.html", context)


@router.get("/portal/patients/{patient_id}", name="patient_page", dependencies=DOCTOR)
def patient_page(patient_id: int, request: Request, db: SessionDep, user: WebUser) -> Response:
    """One of the doctor's patients: their appointments and the exams this doctor ordered. Another patient: the 404
    page, as the API answers for a patient the doctor does not treat."""
    patient = find_patient(db, existing_id(patient_id, NO_PATIENT), user.principal)
    # The appointments as the API's list reads them (each read in the patient's access log).
    appointments = appointments_service.read_many(
        db, request, user.principal, where=[Appointment.patient_id == patient.id], newest_first=True
    )
    exams = service.patient_exams(db, patient.id, user.principal)
    # The same row the API's exam list writes for this read.
    access_log.record(db, request, user.id, "exams.list", [e.patient_id for e in exams])
    db.commit()
    return render(
        request,
        "exams/patient.html",
        {"patient": patient, "appointments": appointments, "exams": exams, "status_text": _status_text(request)},
    )


def _status_text(request: Request):
    t = translator(request)
    user = request.state.web_user
    return lambda status: status_text(t, user.role, status)


# --- ordering ---------------------------------------------------------------------------------------------------


@router.get("/portal/exams/new", name="exam_new", dependencies=DOCTOR)
def new_exam_page(request: Request, db: SessionDep, user: WebUser, patient: PageId) -> Response:
    found = find_patient(db, patient, user.principal)
    return render(request, "exams/new.html", {"patient": found, "values": {}, "errors": {}})


@router.post("/portal/exams/new", dependencies=DOCTOR)
async def order_exam(request: Request, db: SessionDep, user: WebUser, patient: PageId) -> Response:
    found = await run_in_threadpool(find_patient, db, patient, user.principal)
    form = await read_form(request, ExamOrder)
    if form.data is None:
        context = {"patient": found, "values": form.values, "errors": form.errors}
        return render(request, "exams/new.html", context, status_code=422)
    body = NewExam(patient_id=found.id, exam_type=form.data.exam_type)
    exam = await run_in_threadpool(service.order_exam, db, body, user.principal)
    t = translator(request)
    return redirect(
        request, f"/portal/exams/{exam.id}", flash=t.gettext("Exam ordered. The patient was told by email.")
    )


class ExamOrder(BaseModel):
    """The order form: the exam's type (the patient comes from the page's URL, the doctor is the one signed in)."""

    exam_type: ExamType


# --- one exam ---------------------------------------------------------------------------------------------------


def exam_page(
    request: Request,
    db: Session,
    user: SignedIn,
    exam: Exam,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    patient = db.get_one(User, exam.patient_id) if user.role == "doctor" else None
    return render(
        request,
        "exams/detail.html",
        {**status_context(request, user, exam), "patient": patient, "errors": errors or {}},
        status_code=status_code,
    )


def status_context(request: Request, user: SignedIn, exam: Exam) -> dict[str, Any]:
    changeable = service.may_change(user.principal, exam)
    return {
        "exam": exam,
        "status_label": status_text(translator(request), user.role, exam.status),
        "changeable": changeable,
        "can_upload": changeable and exam.status not in ("ready", "cancelled"),
        "can_release": changeable and exam.status == "verified",
        # For the uploader, the status partial asks again while the file processor is at work (htmx; without it, a
        # link reloads). The patient waits for an email instead.
        "processing": exam.status == "uploaded" and changeable,
        "max_megabytes": f"{request.app.state.settings.storage.max_upload_bytes / 2**20:g}",
    }


@router.get("/portal/exams/{exam_id}", name="exam_page", dependencies=PATIENT_OR_DOCTOR)
def exam_detail(exam_id: int, request: Request, db: SessionDep, user: WebUser) -> Response:
    """The exam as the API's GET /exams/{id} reads it (404 page for another patient's, the read in the patient's
    access log)."""
    return exam_page(request, db, user, service.read_exam(db, request, exam_id, user.principal))


@router.get("/portal/exams/{exam_id}/status", name="exam_status", dependencies=PATIENT_OR_DOCTOR)
def exam_status(exam_id: int, request: Request, db: SessionDep, user: WebUser) -> Response:
    """The status block alone, for htmx to poll while the file is checked. Not an access-log row each time: it shows
    the exam's state to whoever's read of the page is already logged, nothing of the patient's record."""
    exam = service.find(db, exam_id, user.principal)
    return render(request, "exams/_status.html", status_context(request, user, exam))


@router.post("/portal/exams/{exam_id}/result", name="exam_upload", dependencies=DOCTOR)
async def upload_result(
    exam_id: int, request: Request, db: SessionDep, settings: SettingsDep, s3: S3Dep, user: WebUser
) -> Response:
    """The result PDF from the form, checked and stored as the API's PUT /exams/{id}/result does (the S3 put and the
    database in the thread pool). A refused file: the page again, the reason next to the field."""
    t = translator(request)
    posted = await request.form()  # parsed already by the CSRF check, within body_limit's upload-form limit
    upload = posted.get(RESULT_FIELD)
    if not isinstance(upload, UploadFile) or not upload.filename:
        exam = await run_in_threadpool(service.find_to_change, db, exam_id, user.principal)
        problem = t.gettext("Choose the result's PDF file.")
        return await run_in_threadpool(exam_page, request, db, user, exam, {RESULT_FIELD: problem}, 422)
    try:
        await service.accept_result(
            db, s3, settings.storage, exam_id, user.principal, upload.content_type, _chunks(upload)
        )
    except HTTPException as refused:
        if refused.status_code not in (409, 413, 415):
            raise
        exam = await run_in_threadpool(service.find, db, exam_id, user.principal)
        problem = upload_problem(t, refused, settings.storage.max_upload_bytes)
        return await run_in_threadpool(exam_page, request, db, user, exam, {RESULT_FIELD: problem}, refused.status_code)
    finally:
        await upload.close()
    return redirect(
        request,
        f"/portal/exams/{exam_id}",
        flash=t.gettext("Result uploaded. It is being checked; this takes a few seconds."),
    )


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(CHUNK_BYTES):
        yield chunk


@router.post("/portal/exams/{exam_id}/ready", name="exam_release", dependencies=DOCTOR)
def release_result(
    exam_id: int, request: Request, db: SessionDep, settings: SettingsDep, s3: S3Dep, user: WebUser
) -> Response:
    t = translator(request)
    try:
        service.release(db, s3, settings.storage, exam_id, user.principal)
    except HTTPException as refused:
        if refused.status_code != 409:
            raise
        db.rollback()
        exam = service.find(db, exam_id, user.principal)
        return exam_page(request, db, user, exam, {"": release_problem(t, refused)}, 409)
    return redirect(
        request, f"/portal/exams/{exam_id}", flash=t.gettext("Result released. The patient was told by email.")
    )


@router.get("/portal/exams/{exam_id}/download", name="exam_download", dependencies=PATIENT_OR_DOCTOR)
async def download(
    exam_id: int, request: Request, pool: HotPoolDep, settings: SettingsDep, s3: S3Dep, user: WebUser
) -> Response:
    """303 to the short-lived link of the API's GET /exams/{id}/download, audited as it is (granted or denied)."""
    try:
        link = await service.download_link(pool, request, s3, settings.storage, exam_id, user.principal)
    except HTTPException as refused:
        if refused.status_code != 409:
            raise
        flash = translator(request).gettext("The result is not ready yet. We will email you when it is.")
        return redirect(request, f"/portal/exams/{exam_id}", flash=flash)
    return RedirectResponse(link.url, status_code=303)
