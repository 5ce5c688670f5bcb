"""The portal's account pages: registration and email confirmation, a forgotten password (anyone); accounts, doctors
and their schedules (staff and admins). Every rule is the API's own function (accounts/service.py,
agendas/service.py): a page only reads the form, calls it and shows the outcome in the user's language."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from starlette.background import BackgroundTask

from clinic_api import pagination
from clinic_api.accounts import service
from clinic_api.agendas import service as agendas
from clinic_api.agendas.routes import create_exception
from clinic_api.agendas.schemas import BlockIn, NewException
from clinic_api.deps import EngineDep, LoginThrottleDep, PathId, SessionDep, SettingsDep
from clinic_api.schemas import (
    ConsentIn,
    PasswordChange,
    PasswordReset,
    PasswordResetRequest,
    Purpose,
    Registration,
    Text,
    UserOut,
    VerifyEmail,
)
from clinic_api.throttle import client_of
from clinic_api.web.errors import BAD_PAGE_LINK
from clinic_api.web.forms import Form, read_form
from clinic_api.web.i18n import N_, Translator, translator
from clinic_api.web.responses import keep_flash, redirect
from clinic_api.web.session import WebUser, web_role
from clinic_api.web.templating import render

router = APIRouter(include_in_schema=False)
STAFF = [Depends(web_role("staff", "admin"))]
PAGE_SIZE = 50

# The API's rules speak English to developers; the pages say the same in the user's language.
PASSWORD_RULES = (
    ("must have", N_("Use 12 to 128 characters.")),
    ("must not contain the email", N_("The password must not contain your email address or its part before the @.")),
    ("most common passwords", N_("This is one of the 30,000 most common passwords. Choose another.")),
    ("too easy to guess", N_("This password is too easy to guess. A few unrelated words make a strong one.")),
)
SCHEDULE_RULES = (
    ("is not after starts", "ends", N_("The end must be after the start.")),
    ("shorter than one", "ends", N_("The block is shorter than one slot.")),
    ("overlaps", "starts", N_("This block overlaps another one on the same weekday.")),
)
REFUSALS = {
    service.NOT_FOUND: N_("This account no longer exists."),
    service.NOT_YOURSELF: N_("You cannot disable your own account."),
    service.NOT_YOURS_TO_DISABLE: N_("Staff may disable or enable patient and doctor accounts only."),
}
NEEDS_CARE = N_("Agree to care to become a patient: without it the clinic cannot keep your record.")
INVALID_VERIFY_LINK = N_("This link is invalid, has expired or was already used. Register again to get a new one.")
INVALID_RESET_LINK = N_("This link is invalid, has expired or was already used. Ask for a new one.")
NO_TOKEN = N_("Open the link from the email again: this page could not read its code.")
LAST_BEFORE_FIRST = N_("The last day must not be before the first day.")
DAYS_OFF_ADDED = N_("The doctor's days off were added: no slot is offered on them.")
CLOSURE_ADDED = N_("The clinic's closure was added: no doctor offers a slot on those days.")
TOO_MANY_REQUESTS = N_("Too many attempts from your network. Wait a few minutes and try again.")
WEEKDAYS = (N_("Monday"), N_("Tuesday"), N_("Wednesday"), N_("Thursday"), N_("Friday"), N_("Saturday"), N_("Sunday"))
KINDS = {"in_person": N_("In person"), "video": N_("Video"), "any": N_("In person or video")}
ROLES = {"patient": N_("Patient"), "doctor": N_("Doctor"), "staff": N_("Staff"), "admin": N_("Admin")}
PURPOSES = {
    "care": N_("Care: my health data is processed to treat me and keep my medical record (required)."),
    "research": N_("Research: my records may be used, without my identity, in medical research."),
    "communications": N_("Communications: the clinic may email me news and campaigns."),
}


def password_message(problem: str, t: Translator) -> str:
    return next((t.gettext(text) for key, text in PASSWORD_RULES if key in problem), t.gettext(problem))


def refused_fields(error: RequestValidationError, form: Form, t: Translator) -> None:
    """A password-policy 422 from the shared logic, shown next to the password field."""
    for item in error.errors():
        form.error(str(item["loc"][-1]), password_message(str(item["msg"]), t))


# --- Registration and email confirmation -------------------------------------------------------------------------


@router.get("/portal/privacy-notice", name="privacy_notice")
def privacy_notice(request: Request, settings: SettingsDep) -> Response:
    """The privacy notice in force, public: registration links to it, and the consent names its version."""
    return render(
        request, "accounts/privacy_notice.html", {"version": settings.privacy.notice_version, "purposes": PURPOSES}
    )


@router.get("/portal/register", name="register")
def register_page(request: Request) -> Response:
    language = "en" if translator(request).language == "en" else "pt-BR"
    return render(request, "accounts/register.html", {"values": {"language": language}, "errors": {}})


@router.post("/portal/register")
async def register(
    request: Request, session: SessionDep, settings: SettingsDep, throttle: LoginThrottleDep
) -> Response:
    """The API's registration: the same answer whether or not the address has an account."""
    form = await read_form(request, Registration)
    t = translator(request)
    if form.data is not None:
        try:
            await run_in_threadpool(
                service.register_patient, session, settings, throttle, form.data, client_of(request)
            )
        except HTTPException:  # 429: the only refusal registration gives
            form.error("", t.gettext(TOO_MANY_REQUESTS))
        else:
            return redirect(request, "/portal/register/sent")
    return render(request, "accounts/register.html", {"values": form.values, "errors": form.errors}, 422)


@router.get("/portal/register/sent", name="register_sent")
def register_sent(request: Request) -> Response:
    return render(request, "accounts/register_sent.html")


class ConfirmEmailForm(BaseModel):
    token: Text = Field(min_length=1, max_length=2048)
    password: Text = Field(min_length=12, max_length=128)
    purposes: list[Purpose] = Field(default_factory=list, max_length=3)


def _verify_context(settings: Any, values: dict, errors: dict) -> dict:
    return {"values": values, "errors": errors, "purposes": PURPOSES, "version": settings.privacy.notice_version}


@router.get("/portal/verify-email", name="verify_email")
def verify_email_page(request: Request, settings: SettingsDep) -> Response:
    """The emailed link's target: the token is in the fragment, which the page's script moves into the form."""
    return render(request, "accounts/verify_email.html", _verify_context(settings, {"purposes": ["care"]}, {}))


@router.post("/portal/verify-email")
async def verify_email(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The API's confirmation: the password is chosen and the consent to the notice in force recorded, together."""
    form = await read_form(request, ConfirmEmailForm)
    t = translator(request)
    purposes = form.values.get("purposes", [])
    if form.data is not None:
        try:
            consent = ConsentIn(notice_version=settings.privacy.notice_version, purposes=form.data.purposes)
        except ValidationError:
            form.error("purposes", t.gettext(NEEDS_CARE))
    if form.data is not None:
        body = VerifyEmail(token=form.data.token, password=form.data.password, consent=consent)
        try:
            await run_in_threadpool(service.confirm_email, session, settings, body, request)
        except HTTPException:
            form.error("", t.gettext(INVALID_VERIFY_LINK))
        except RequestValidationError as refused:
            refused_fields(refused, form, t)
        else:
            confirmed = t.gettext("Your email is confirmed. Sign in with your new password.")
            return redirect(request, "/portal/sign-in", flash=confirmed)
    _link_without_token(form, t)
    values = {**form.values, "purposes": purposes if isinstance(purposes, list) else [purposes]}
    return render(request, "accounts/verify_email.html", _verify_context(settings, values, form.errors), 422)


def _link_without_token(form: Form, t: Translator) -> None:
    """No token in the form: the emailed link was not opened as sent. Say that at the top, not at a hidden field."""
    if "token" in form.errors and "" not in form.errors:
        form.errors[""] = t.gettext(NO_TOKEN)
        del form.errors["token"]


# --- A forgotten password ----------------------------------------------------------------------------------------


@router.get("/portal/forgot-password", name="forgot_password")
def forgot_password_page(request: Request) -> Response:
    return render(request, "accounts/forgot_password.html", {"values": {}, "errors": {}})


@router.post("/portal/forgot-password")
async def forgot_password(
    request: Request, session: SessionDep, engine: EngineDep, settings: SettingsDep, throttle: LoginThrottleDep
) -> Response:
    """The API's reset request: the same answer for any address, the lookup after it has gone."""
    form = await read_form(request, PasswordResetRequest)
    t = translator(request)
    if form.data is not None:
        email = form.data.email
        try:
            may_send = await run_in_threadpool(
                service.ask_for_password_reset, session, throttle, email, client_of(request)
            )
        except HTTPException:
            form.error("", t.gettext(TOO_MANY_REQUESTS))
        else:
            sent = t.gettext("If this address has an account, we have emailed it a link to choose a new password.")
            response = redirect(request, "/portal/sign-in", flash=sent)
            if may_send:
                response.background = BackgroundTask(service.send_reset_link, engine, settings, email)
            return response
    return render(request, "accounts/forgot_password.html", {"values": form.values, "errors": form.errors}, 422)


@router.get("/portal/reset-password", name="reset_password")
def reset_password_page(request: Request) -> Response:
    """The emailed link's target: the token is in the fragment, which the page's script moves into the form."""
    return render(request, "accounts/reset_password.html", {"values": {}, "errors": {}})


@router.post("/portal/reset-password")
async def reset_password(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    form = await read_form(request, PasswordReset)
    t = translator(request)
    if form.data is not None:
        try:
            await run_in_threadpool(service.reset_password, session, settings, form.data)
        except HTTPException:
            form.error("", t.gettext(INVALID_RESET_LINK))
        except RequestValidationError as refused:
            refused_fields(refused, form, t)
        else:
            changed = t.gettext("Your password was changed and every other session signed out. Sign in with it.")
            return redirect(request, "/portal/sign-in", flash=changed)
    _link_without_token(form, t)
    return render(request, "accounts/reset_password.html", {"values": form.values, "errors": form.errors}, 422)


# --- Changing one's password (any role) ---------------------------------------------------------------------------


class NewPasswordForm(PasswordChange):
    """The API's body, and the new password typed twice: a typo would otherwise lock the owner out."""

    repeat_password: str = Field(min_length=1, max_length=128)


TOO_MANY_GUESSES = N_("Too many wrong passwords. Wait a few minutes and try again.")
PASSWORD_REFUSALS = {
    service.WRONG_PASSWORD: ("current_password", N_("This is not your current password.")),
    service.SAME_PASSWORD: ("new_password", N_("Choose a password different from the current one.")),
}


@router.get("/portal/password", name="change_password")
def change_password_page(request: Request, user: WebUser) -> Response:
    return render(request, "accounts/change_password.html", {"values": {}, "errors": {}})


@router.post("/portal/password")
async def change_password(request: Request, session: SessionDep, throttle: LoginThrottleDep, user: WebUser) -> Response:
    """The API's password change (the current password, the policy); every session ends, this one too, so the owner
    signs in again with the new password."""
    form = await read_form(request, NewPasswordForm)
    t = translator(request)
    if form.data is not None and form.data.repeat_password != form.data.new_password:
        form.error("repeat_password", t.gettext("The two new passwords differ. Type the same one twice."))
    if form.data is not None:
        try:
            await run_in_threadpool(
                service.change_password,
                session,
                throttle,
                client_of(request),
                user.id,
                form.data.current_password,
                form.data.new_password,
            )
        except HTTPException as refused:
            name, text = PASSWORD_REFUSALS.get(str(refused.detail), ("", TOO_MANY_GUESSES))
            form.error(name, t.gettext(text))
        except RequestValidationError as refused:
            refused_fields(refused, form, t)
        else:
            changed = t.gettext("Your password was changed and every session signed out. Sign in with the new one.")
            return redirect(request, "/portal/sign-in", flash=changed)
    return render(request, "accounts/change_password.html", {"values": {}, "errors": form.errors}, 422)


# --- Staff: accounts ---------------------------------------------------------------------------------------------


@router.get("/portal/staff/accounts", name="staff_accounts", dependencies=STAFF)
def staff_accounts(
    request: Request,
    session: SessionDep,
    user: WebUser,
    role: Annotated[str | None, Query(pattern="^(patient|doctor|staff|admin)?$")] = None,
    cursor: pagination.Cursor = None,
) -> Response:
    """GET /users as a page: accounts by id, a page at a time (each page showing patients is in their access log)."""
    context: dict[str, Any] = {"role": role or "", "roles": ROLES, "rows": [], "next_page": None, "page_error": None}
    try:
        page, following = service.account_page(session, request, user.principal, role or None, PAGE_SIZE, cursor)
    except RequestValidationError:  # only the cursor can be refused here
        page_error = translator(request).gettext(BAD_PAGE_LINK)
        return render(request, "accounts/staff_accounts.html", {**context, "page_error": page_error}, 422)
    rows = [{"account": a, "may_change": service.disable_refusal(user.principal, a.id, a.role) is None} for a in page]
    if following:
        context["next_page"] = urlencode({**({"role": role} if role else {}), "cursor": following})
    return render(request, "accounts/staff_accounts.html", {**context, "rows": rows})


def _change(request: Request, session: Any, user: WebUser, account_id: int, disabled: bool) -> Response:
    """The API's disable/enable. With htmx, the row comes back changed; without, the list with a message."""
    t = translator(request)
    htmx = bool(request.headers.get("HX-Request"))
    try:
        account = service.disable_or_enable(session, request, account_id, user.principal, disabled)
    except HTTPException as refused:
        message = t.gettext(REFUSALS.get(refused.detail, N_("This account cannot be changed.")))
        if htmx:  # htmx swaps no error answer: the whole list comes back, with the message
            reload = Response(headers={"HX-Redirect": "/portal/staff/accounts"})
            keep_flash(reload, request, message)
            return reload
        return redirect(request, "/portal/staff/accounts", flash=message)
    if htmx:
        row = {"account": UserOut.model_validate(account), "may_change": True}
        return render(request, "accounts/account_row.html", {"row": row, "roles": ROLES})
    done = N_("%(name)s's account was disabled.") if disabled else N_("%(name)s's account was enabled.")
    return redirect(request, "/portal/staff/accounts", flash=t.gettext(done, name=account.full_name))


@router.post("/portal/staff/accounts/{account_id}/disable", name="disable_account", dependencies=STAFF)
def disable_account(account_id: PathId, request: Request, session: SessionDep, user: WebUser) -> Response:
    return _change(request, session, user, account_id, disabled=True)


@router.post("/portal/staff/accounts/{account_id}/enable", name="enable_account", dependencies=STAFF)
def enable_account(account_id: PathId, request: Request, session: SessionDep, user: WebUser) -> Response:
    return _change(request, session, user, account_id, disabled=False)


# --- Staff: doctors and their schedules --------------------------------------------------------------------------


def _doctors_page(
    request: Request,
    session: Any,
    user: WebUser,
    cursor: str | None = None,
    values: dict | None = None,
    errors: dict | None = None,
    closures_cursor: str | None = None,
) -> Response:
    """The doctors by id and the clinic's closures not ended yet by start, each list a page at a time (`cursor`,
    `closures_cursor`); a refused cursor answers 422 on the page, next to its list, with a link to its first page."""
    t = translator(request)
    context: dict[str, Any] = {
        "doctors": [],
        "next_page": None,
        "page_error": None,
        "closures": [],
        "later_closures": None,
        "closures_error": None,
        "closure_values": values or {},
        "closure_errors": errors or {},
    }
    try:
        context["doctors"], following = service.doctors_overview(session, request, user.principal, PAGE_SIZE, cursor)
        context["next_page"] = urlencode({"cursor": following}) if following else None
    except RequestValidationError:  # only the cursor can be refused here
        context["page_error"] = t.gettext(BAD_PAGE_LINK)
    try:
        context["closures"], later = _closures(request, session, user, closures_cursor)
        context["later_closures"] = urlencode({"closures_cursor": later}) if later else None
    except RequestValidationError:
        context["closures_error"] = t.gettext(BAD_PAGE_LINK)
    refused = context["page_error"] or context["closures_error"]
    return render(request, "accounts/staff_doctors.html", context, 422 if errors or refused else 200)


@router.get("/portal/staff/doctors", name="staff_doctors", dependencies=STAFF)
def staff_doctors(
    request: Request,
    session: SessionDep,
    user: WebUser,
    cursor: pagination.Cursor = None,
    closures_cursor: pagination.Cursor = None,
) -> Response:
    """The doctors by id, and the clinic's closures by start, a page at a time."""
    return _doctors_page(request, session, user, cursor, closures_cursor=closures_cursor)


def _closures(request: Request, session: Any, user: WebUser, cursor: str | None) -> tuple[list, str | None]:
    """A page of the clinic's closures not ended yet, as GET /closures pages them, and the next page's cursor."""
    return agendas.exceptions_page(session, request, user.id, "portal/closures", None, False, PAGE_SIZE, cursor)


@router.post("/portal/staff/closures", name="add_closure", dependencies=STAFF)
async def add_closure(request: Request, session: SessionDep, settings: SettingsDep, user: WebUser) -> Response:
    """The whole clinic closed on these days (a holiday): the API's closure, every doctor's appointments inside it
    counted."""
    form = await read_form(request, ExceptionForm)
    t = translator(request)
    if form.data is not None and form.data.last_day < form.data.first_day:
        form.error("last_day", t.gettext(LAST_BEFORE_FIRST))
    if form.data is not None:
        body = NewException(reason=form.data.reason, first_day=form.data.first_day, last_day=form.data.last_day)
        added = await run_in_threadpool(create_exception, session, settings, user.principal, body, None)
        return redirect(request, "/portal/staff/doctors", flash=_days_off_added(t, CLOSURE_ADDED, added))
    return await run_in_threadpool(_doctors_page, request, session, user, None, form.values, form.errors)


@router.post("/portal/staff/closures/{closure_id}/remove", name="remove_closure", dependencies=STAFF)
def remove_closure(closure_id: PathId, request: Request, session: SessionDep) -> Response:
    agendas.delete_exception(session, None, closure_id)
    return redirect(request, "/portal/staff/doctors", flash=translator(request).gettext("The closure was removed."))


def _days_off_added(t: Translator, done: str, added: Any) -> str:
    message = t.gettext(done)
    if added.affected_appointment_ids:
        message += " " + t.ngettext(
            "%(num)d appointment is inside them and stays booked until someone cancels it.",
            "%(num)d appointments are inside them and stay booked until someone cancels them.",
            len(added.affected_appointment_ids),
        )
    return message


def _doctor_page(
    request: Request,
    session: Any,
    settings: Any,
    doctor_id: int,
    forms: dict | None = None,
    status_code: int = 200,
    cursor: str | None = None,
) -> Response:
    doctor = agendas.doctor_or_404(session, doctor_id)
    t = translator(request)
    user = request.state.web_user
    exceptions: list[Any] = []
    later: str | None = None
    days_off_error: str | None = None
    try:
        exceptions, later = agendas.exceptions_page(
            session, request, user.id, f"portal/doctors/{doctor_id}/exceptions", doctor_id, False, PAGE_SIZE, cursor
        )
    except RequestValidationError:  # only the cursor can be refused here: 422, next to the list
        days_off_error, status_code = t.gettext(BAD_PAGE_LINK), 422
    closures, later_closures = _closures(request, session, user, None)  # the rest on the doctors page, managed there
    context = {
        "doctor": doctor,
        "blocks": agendas.blocks_of(session, doctor_id),
        "exceptions": exceptions,
        "later_exceptions": urlencode({"cursor": later}) if later else None,
        "days_off_error": days_off_error,
        "closures": closures,
        "later_closures": urlencode({"closures_cursor": later_closures}) if later_closures else None,
        "weekdays": [(str(i), t.gettext(day)) for i, day in enumerate(WEEKDAYS)],
        "kinds": [(kind, t.gettext(text)) for kind, text in KINDS.items()],
        "time_zone": settings.agenda.time_zone,
        "block_values": {"slot_minutes": "30", "kind": "in_person"},
        "block_errors": {},
        "exception_values": {},
        "exception_errors": {},
        **(forms or {}),
    }
    return render(request, "accounts/staff_doctor.html", context, status_code)


@router.get("/portal/staff/doctors/{doctor_id}", name="staff_doctor", dependencies=STAFF)
def staff_doctor(
    doctor_id: PathId, request: Request, session: SessionDep, settings: SettingsDep, cursor: pagination.Cursor = None
) -> Response:
    """The doctor's weekly schedule, and their days off not ended yet by start, a page at a time (`cursor`)."""
    return _doctor_page(request, session, settings, doctor_id, cursor=cursor)


def _add_block(session: Any, doctor_id: int, block: BlockIn) -> None:
    # The schedule's checks see the whole new schedule; the blocks stored already passed them, so a problem is the
    # new block's (the last).
    current = [BlockIn.model_validate(b, from_attributes=True) for b in agendas.blocks_of(session, doctor_id)]
    agendas.replace_blocks(session, doctor_id, [*current, block])


@router.post("/portal/staff/doctors/{doctor_id}/blocks", name="add_block", dependencies=STAFF)
async def add_block(doctor_id: PathId, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """A block added to the weekly schedule: the API's replacement of the whole schedule, with its checks."""
    form = await read_form(request, BlockIn)
    t = translator(request)
    if form.data is not None:
        try:
            await run_in_threadpool(_add_block, session, doctor_id, form.data)
        except RequestValidationError as refused:
            for item in refused.errors():
                text = str(item["msg"])
                field, message = next(
                    ((f, t.gettext(m)) for key, f, m in SCHEDULE_RULES if key in text),
                    ("", t.gettext(N_("This block cannot be added."))),
                )
                form.error(field, message)
        else:
            added = t.gettext("The block was added to the weekly schedule.")
            return redirect(request, f"/portal/staff/doctors/{doctor_id}", flash=added)
    forms = {"block_values": form.values, "block_errors": form.errors}
    return await run_in_threadpool(_doctor_page, request, session, settings, doctor_id, forms, 422)


def _remove_block(session: Any, doctor_id: int, block_id: int) -> None:
    blocks = agendas.blocks_of(session, doctor_id)
    if not any(b.id == block_id for b in blocks):
        raise HTTPException(404, "block not found")
    kept = [BlockIn.model_validate(b, from_attributes=True) for b in blocks if b.id != block_id]
    agendas.replace_blocks(session, doctor_id, kept)


@router.post("/portal/staff/doctors/{doctor_id}/blocks/{block_id}/remove", name="remove_block", dependencies=STAFF)
def remove_block(doctor_id: PathId, block_id: PathId, request: Request, session: SessionDep) -> Response:
    agendas.doctor_or_404(session, doctor_id)
    _remove_block(session, doctor_id, block_id)
    t = translator(request)
    removed = t.gettext("The block was removed from the weekly schedule.")
    return redirect(request, f"/portal/staff/doctors/{doctor_id}", flash=removed)


class ExceptionForm(BaseModel):
    reason: Text = Field(min_length=1, max_length=200)
    first_day: date
    last_day: date


@router.post("/portal/staff/doctors/{doctor_id}/exceptions", name="add_exception", dependencies=STAFF)
async def add_exception(
    doctor_id: PathId, request: Request, session: SessionDep, settings: SettingsDep, user: WebUser
) -> Response:
    """Whole days off for the doctor (the clinic's days): the API's exception, appointments inside it listed."""
    form = await read_form(request, ExceptionForm)
    t = translator(request)
    if form.data is not None and form.data.last_day < form.data.first_day:
        form.error("last_day", t.gettext(LAST_BEFORE_FIRST))
    if form.data is not None:
        body = NewException(reason=form.data.reason, first_day=form.data.first_day, last_day=form.data.last_day)
        await run_in_threadpool(agendas.doctor_or_404, session, doctor_id)
        added = await run_in_threadpool(create_exception, session, settings, user.principal, body, doctor_id)
        message = _days_off_added(t, DAYS_OFF_ADDED, added)
        return redirect(request, f"/portal/staff/doctors/{doctor_id}", flash=message)
    forms = {"exception_values": form.values, "exception_errors": form.errors}
    return await run_in_threadpool(_doctor_page, request, session, settings, doctor_id, forms, 422)


@router.post(
    "/portal/staff/doctors/{doctor_id}/exceptions/{exception_id}/remove", name="remove_exception", dependencies=STAFF
)
def remove_exception(doctor_id: PathId, exception_id: PathId, request: Request, session: SessionDep) -> Response:
    agendas.delete_exception(session, doctor_id, exception_id)
    t = translator(request)
    return redirect(request, f"/portal/staff/doctors/{doctor_id}", flash=t.gettext("The days off were removed."))
