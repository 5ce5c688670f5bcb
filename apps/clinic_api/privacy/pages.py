"""The patient's profile and privacy pages, and the staff's audit log: `/portal/profile`, `/portal/privacy` (consents,
who accessed my data, export, account deletion), `/portal/staff/audit`. Every rule and audit row comes from the
functions the API routes call (privacy/service.py, routes/profiles.py): a page only reads forms and shows results."""

from __future__ import annotations

import json
from typing import Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.orm import Session

from clinic_api import pagination
from clinic_api.deps import S3Dep, SessionDep, SettingsDep
from clinic_api.models import User
from clinic_api.privacy import service
from clinic_api.routes.profiles import CPF_TAKEN, profile_out, update_profile
from clinic_api.schemas import ConsentIn, Language, Name, PatientProfileIn
from clinic_api.settings import Settings
from clinic_api.web import cookies, session
from clinic_api.web.errors import BAD_PAGE_LINK
from clinic_api.web.forms import read_form
from clinic_api.web.i18n import N_, translator
from clinic_api.web.responses import redirect
from clinic_api.web.session import SESSION_COOKIE, WebUser, web_role
from clinic_api.web.templating import render

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50  # the API's default page of the access log and the audit log
CLEARABLE = ("date_of_birth", "phone", "emergency_contact_name", "emergency_contact_phone")
ERASE_PHRASE = N_("DELETE MY ACCOUNT")
CPF_IN_USE = N_("A patient with this CPF is already registered. Check the number.")
PATIENTS_ONLY = N_("Only a patient's profile has this field.")

ROLES = {"patient": N_("patient"), "doctor": N_("doctor"), "staff": N_("staff"), "admin": N_("administrator")}
PURPOSES = {  # the privacy notice's purposes (schemas.Purpose): a name, and what it means
    "care": (N_("Care"), N_("My health data is used to treat me and keep my medical record.")),
    "research": (N_("Research"), N_("My records may be used, de-identified, in medical research.")),
    "communications": (N_("Communications"), N_("News and campaigns from the clinic by email.")),
}
ACCESSES = {  # the patient's access log: what someone else did with their data
    "profile.read": N_("viewed your profile"),
    "profile.update": N_("changed your profile"),
    "profile.lookup": N_("found your record by your CPF"),
    "appointments.list": N_("viewed your appointments"),
    "exams.list": N_("viewed your exams"),
    "exam.read": N_("viewed your exam"),
    "result.download": N_("downloaded your exam result"),
    "accounts.list": N_("viewed your account in the list of accounts"),
    "account.disabled": N_("disabled your account"),
    "account.enabled": N_("enabled your account"),
}
ACTIONS = {  # the audit log, for staff
    "profile.read": N_("viewed a profile"),
    "profile.update": N_("changed a profile"),
    "profile.lookup": N_("found a patient by CPF"),
    "appointments.list": N_("viewed appointments"),
    "exams.list": N_("viewed exams"),
    "exam.read": N_("viewed an exam"),
    "result.download": N_("downloaded an exam result"),
    "result.upload": N_("uploaded an exam result"),
    "result.replace": N_("replaced an exam result"),
    "exam.correct": N_("corrected an exam"),
    "exam.cancel": N_("cancelled an exam"),
    "accounts.list": N_("viewed the list of accounts"),
    "account.disabled": N_("disabled an account"),
    "account.enabled": N_("enabled an account"),
    "data.export": N_("exported their data"),
    "account.erasure": N_("asked to delete their account"),
    "audit.read": N_("read the audit log"),
}
OUTCOMES = {
    "granted": N_("allowed"),
    "denied": N_("refused"),
    "done": N_("done"),
    "requested": N_("requested"),
    "completed": N_("completed"),
}
# The API schema's own messages (schemas.PatientProfileIn), shown next to the field in the user's language.
N_("is not a valid CPF (11 digits whose two check digits match)")
N_("must be between 1900-01-01 and today")
# What privacy.service.erase erases and keeps (its ERASED and KEPT), said to the patient before they confirm.
ERASED = {
    "email": N_("your email address and your password: you can no longer sign in"),
    "phone": N_("your phone number and your emergency contact"),
    "consents": N_("your optional consents (research, communications)"),
    "emails": N_("emails waiting to be sent to you"),
    "appointments": N_("your future appointments, which are cancelled"),
}
KEPT = {
    "record": N_("your medical record: appointments, exams and their result files"),
    "identity": N_("what identifies the record: full name, date of birth and CPF (encrypted)"),
    "history": N_("your consent history and the audit log, as proof of what was agreed and done"),
}


class ProfileForm(PatientProfileIn):
    """The profile form: the API's schema and rules (PatientProfileIn); name and email language are always on the form,
    so an empty one is an error rather than "unchanged"."""

    full_name: Name
    language: Language


class ConsentForm(BaseModel):
    purposes: list[Literal["research", "communications"]] = Field(default_factory=list, max_length=2)


class ErasureForm(BaseModel):
    password: str = Field(min_length=1, max_length=128)
    phrase: str = Field(min_length=1, max_length=100)


class AuditFilters(BaseModel):
    action: str | None = Field(None, max_length=60, pattern=r"^[a-z_.]+$")
    user_id: int | None = Field(None, ge=1, le=2**31 - 1)
    subject_id: int | None = Field(None, ge=1, le=2**31 - 1)


# --- the profile --------------------------------------------------------------------------------------------------


def _profile_values(db: Session, settings: Settings, user_id: int) -> tuple[dict, str | None]:
    """The form's values from the stored profile, and the masked CPF (the full CPF is never shown)."""
    profile = profile_out(db, db.get_one(User, user_id), settings)
    values = {"full_name": profile.full_name, "language": profile.language, "email": profile.email}
    patient = profile.patient
    if patient is None:
        return values, None
    for name in CLEARABLE:
        value = getattr(patient, name)
        values[name] = value.isoformat() if name == "date_of_birth" and value else (value or "")
    return values, patient.cpf


@router.get("/portal/profile", name="profile")
def profile_page(request: Request, user: WebUser, db: SessionDep, settings: SettingsDep) -> Response:
    values, cpf = _profile_values(db, settings, user.id)
    return render(request, "privacy/profile.html", {"values": values, "errors": {}, "cpf": cpf})


def _save_profile(db: Session, settings: Settings, user_id: int, role: str, data: ProfileForm) -> tuple[str, str]:
    """update_profile with what the form says: an emptied optional field is cleared (the API's `null`); an empty CPF
    leaves it as it is (a CPF is corrected, never removed). Returns the field and message of a rule the API's
    function refused, or ("", "") once saved."""
    changes = data.model_dump(exclude_unset=True)
    if role == "patient":
        changes = {**dict.fromkeys(CLEARABLE), **changes}
    try:
        update_profile(db, db.get_one(User, user_id), PatientProfileIn(**changes), settings)
    except HTTPException as refused:
        if refused.detail != CPF_TAKEN:
            raise
        return "cpf", CPF_IN_USE
    except RequestValidationError as refused:  # a patient's field posted for another role's profile
        return str(refused.errors()[0]["loc"][-1]), PATIENTS_ONLY
    return "", ""


@router.post("/portal/profile")
async def save_profile(request: Request, user: WebUser, db: SessionDep, settings: SettingsDep) -> Response:
    t = translator(request)
    form = await read_form(request, ProfileForm)
    if form.data is not None:
        field, problem = await run_in_threadpool(_save_profile, db, settings, user.id, user.role, form.data)
        if not problem:
            return redirect(request, "/portal/profile", flash=t.gettext("Your profile was saved."))
        form.error(field, t.gettext(problem))
    stored, cpf = await run_in_threadpool(_profile_values, db, settings, user.id)
    values = {**form.values, "email": stored["email"]}
    return render(request, "privacy/profile.html", {"values": values, "errors": form.errors, "cpf": cpf}, 422)


# --- privacy: consents, who accessed my data, export, erasure ---------------------------------------------------------

PATIENT = [Depends(web_role("patient"))]


def _privacy_context(
    db: Session, request: Request, user_id: int, cursor: str | None = None, history: str | None = None
) -> dict:
    """The privacy page: the consent in force, a page of the consent history (`history`: its cursor) and of the access
    log (`cursor`). A next-page link keeps the other list's page; a changed cursor is said in its own section."""
    bad_link = translator(request).gettext(BAD_PAGE_LINK)
    in_force = service.consent_in_force(db, user_id)
    consents: list = []
    accesses: list = []
    older_consents = older = page_error = history_error = None
    try:
        consents, following = service.consent_page(db, request, user_id, PAGE_SIZE, history, newest_first=True)
    except RequestValidationError:  # only the cursor can be refused here
        history_error = bad_link
    else:
        older_consents = urlencode({**_kept(cursor=cursor), "history": following}) if following else None
    try:
        accesses, following = service.access_page(db, request, user_id, PAGE_SIZE, cursor)
    except RequestValidationError:
        page_error = bad_link
    else:
        older = urlencode({**_kept(history=history), "cursor": following}) if following else None
    return {
        "in_force": set(in_force.purposes) if in_force else {"care"},
        "history": consents,
        "history_cursor": history,
        "older_consents": older_consents,
        "history_error": history_error,
        "accesses": accesses,
        "older": older,
        "page_error": page_error,
        "cursor": cursor,
        "purposes": PURPOSES,
        "actions": ACCESSES,
        "roles": ROLES,
        "outcomes": OUTCOMES,
    }


def _kept(**cursors: str | None) -> dict[str, str]:
    return {name: value for name, value in cursors.items() if value}


@router.get("/portal/privacy", name="privacy", dependencies=PATIENT)
def privacy_page(
    request: Request, user: WebUser, db: SessionDep, cursor: pagination.Cursor = None, history: pagination.Cursor = None
) -> Response:
    context = _privacy_context(db, request, user.id, cursor, history)
    bad_link = context["page_error"] or context["history_error"]
    return render(request, "privacy/privacy.html", context, 422 if bad_link else 200)


@router.post("/portal/privacy/consents", name="privacy_consents", dependencies=PATIENT)
async def change_consents(request: Request, user: WebUser, db: SessionDep, settings: SettingsDep) -> Response:
    t = translator(request)
    form = await read_form(request, ConsentForm)
    if form.data is None:
        context = await run_in_threadpool(_privacy_context, db, request, user.id)
        return render(request, "privacy/privacy.html", {**context, "consent_errors": form.errors}, 422)
    # ConsentIn: the API's rule (care included, each purpose once) on what is recorded.
    consent = ConsentIn(notice_version=settings.privacy.notice_version, purposes=["care", *form.data.purposes])
    await run_in_threadpool(
        service.change_consent, db, request, settings, user.id, consent.notice_version, consent.purposes
    )
    return redirect(request, "/portal/privacy#consents", flash=t.gettext("Your choices were saved."))


@router.post("/portal/privacy/export", name="privacy_export", dependencies=PATIENT)
def download_export(request: Request, user: WebUser, db: SessionDep, settings: SettingsDep, s3: S3Dep) -> Response:
    """The API's export (GET /me/export), as a file; a POST, as it writes an audit row."""
    document = service.export(db, request, settings, s3, user.id)
    day = document.exported_at.astimezone(settings.agenda.zone).date().isoformat()
    body = json.dumps(document.model_dump(mode="json"), ensure_ascii=False, indent=2)
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="clinic-data-{day}.json"'},
    )


def _erasure_context(values: dict, errors: dict) -> dict:
    return {"values": values, "errors": errors, "erased": ERASED, "kept": KEPT, "phrase": ERASE_PHRASE}


@router.get("/portal/privacy/delete-account", name="privacy_delete", dependencies=PATIENT)
def erasure_page(request: Request, user: WebUser) -> Response:
    return render(request, "privacy/delete.html", _erasure_context({}, {}))


@router.post("/portal/privacy/delete-account", dependencies=PATIENT)
async def erase_account(request: Request, user: WebUser, db: SessionDep, settings: SettingsDep) -> Response:
    """The API's erasure (POST /me/erasure: password, audit rows, what is kept), confirmed by typing a phrase too;
    then the browser's session ends with the account's (the erasure disables it: every other session is dead too)."""
    t = translator(request)
    form = await read_form(request, ErasureForm)
    if form.data is not None and form.data.phrase.strip().casefold() != t.gettext(ERASE_PHRASE).casefold():
        form.error("phrase", t.gettext("Type the phrase exactly as shown."))
    if form.data is not None:
        try:
            erased = await run_in_threadpool(service.erase, db, request, settings, user.id, form.data.password)
        except service.WrongPassword:
            form.error("password", t.gettext("This is not your password."))
        except HTTPException:  # 429: too many wrong passwords, as at sign-in
            form.error("", t.gettext("Too many wrong passwords. Wait a few minutes and try again."))
        else:
            await run_in_threadpool(_end_session, db, request)
            until = t.format_date(erased.retained_until, "long")
            message = t.gettext(
                "Your account was deleted. The law requires your medical record to be kept until %(date)s.", date=until
            )
            response = redirect(request, "/portal/sign-in", flash=message)
            cookies.drop(response, request, SESSION_COOKIE)
            return response
    values = {"phrase": form.values.get("phrase", "")}
    return render(request, "privacy/delete.html", _erasure_context(values, form.errors), 422)


def _end_session(db: Session, request: Request) -> None:
    session.end(db, request)
    db.commit()


# --- the staff's audit log ----------------------------------------------------------------------------------------


@router.get("/portal/staff/audit", name="staff_audit", dependencies=[Depends(web_role("staff", "admin"))])
def audit_page(
    request: Request,
    user: WebUser,
    db: SessionDep,
    cursor: pagination.Cursor = None,
    action: str = "",
    user_id: str = "",
    subject_id: str = "",
) -> Response:
    t = translator(request)
    typed = {"action": action, "user_id": user_id, "subject_id": subject_id}
    context = {"values": typed, "actions": ACTIONS, "roles": ROLES, "outcomes": OUTCOMES, "page_error": None}
    try:
        filters = AuditFilters.model_validate({k: v for k, v in typed.items() if v.strip()})
    except ValidationError as invalid:
        errors: dict[str, str] = {}
        for error in invalid.errors():
            name = str(error["loc"][0])
            problem = N_("Choose one of the options.") if name == "action" else N_("Enter an account number, like 42.")
            errors.setdefault(name, t.gettext(problem))
        return render(request, "privacy/audit.html", {**context, "errors": errors, "page": None}, 422)
    query = {k: v for k, v in filters.model_dump().items() if v is not None}
    context = {**context, "errors": {}, "filters": query}
    try:
        page, following = service.audit_page(db, request, user.principal, PAGE_SIZE, cursor, **query)
    except RequestValidationError:  # the filters passed: only the cursor can be refused here
        return render(
            request, "privacy/audit.html", {**context, "page": None, "page_error": t.gettext(BAD_PAGE_LINK)}, 422
        )
    return render(request, "privacy/audit.html", {**context, "page": page, "next_cursor": following})
