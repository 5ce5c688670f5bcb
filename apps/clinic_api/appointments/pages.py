"""The portal's appointment pages: a patient's list, booking, an appointment's page (reschedule, cancel, video
visit), and a doctor's agenda. Every rule is service.py's or video.py's, the ones the API's routes call; a page only
turns their refusals into sentences in the user's language."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import or_
from sqlalchemy.orm import Session

from clinic_api.agendas.service import free_slots_of
from clinic_api.agendas.slots import Slot, instant
from clinic_api.appointments import service, video
from clinic_api.appointments.service import Refusal
from clinic_api.deps import PathId, SessionDep, SettingsDep
from clinic_api.models import Appointment
from clinic_api.schemas import Cancellation, NewAppointment, Reschedule
from clinic_api.settings import Settings
from clinic_api.web.forms import Form, read_form
from clinic_api.web.i18n import N_, Translator, translator
from clinic_api.web.responses import redirect
from clinic_api.web.session import SignedIn, WebUser, web_role
from clinic_api.web.templating import render

router = APIRouter(include_in_schema=False)
PATIENT = [Depends(web_role("patient"))]
DOCTOR = [Depends(web_role("doctor"))]
VISITORS = [Depends(web_role("patient", "doctor"))]
PAST_SHOWN = 50
Kind = Literal["in_person", "video"]

# A refusal's reason (service.Refusal, video.closed) -> what the page says.
REFUSED = {
    "not_free": N_("This time is no longer free: someone booked it meanwhile. Choose another time."),
    "too_many": N_("You already have as many upcoming appointments as allowed. Cancel one before booking another."),
    "too_late": N_("It is too late to change this appointment online. Please call the clinic."),
    "cancelled": N_("This appointment is cancelled."),
    "not_video": N_("This appointment is not a video visit."),
    "not_configured": N_("Video visits are not available right now. Please call the clinic."),
    "too_early": N_("The video room is not open yet."),
    "ended": N_("This video visit has ended."),
}
NO_LONGER_BOOKABLE = N_("This time can no longer be booked. Choose another time.")
REASON_REQUIRED = N_("Give the patient a reason: they receive it by email.")


def refused(t: Translator, error: HTTPException | RequestValidationError) -> str:
    if isinstance(error, Refusal):
        return t.gettext(REFUSED[error.reason])
    if isinstance(error, RequestValidationError):  # a start in the past or beyond the horizon, a kind it lacks
        return t.gettext(NO_LONGER_BOOKABLE)
    raise error  # anything else (404) is the error page's


def when(t: Translator, moment: datetime) -> str:
    """An appointment's start as people say it, in the user's language and the clinic's zone."""
    return t.gettext("%(date)s at %(time)s", date=t.format_date(moment, "full"), time=t.format_time(moment))


def partial(request: Request) -> bool:
    """An htmx request (filters changed): answer only the part it swaps."""
    return request.headers.get("hx-request") == "true"


def today(settings: Settings) -> date:
    return datetime.now(UTC).astimezone(settings.agenda.zone).date()


def last_bookable_day(settings: Settings) -> date:
    return today(settings) + timedelta(days=settings.appointments.booking_horizon_days - 1)


def bookable_day(settings: Settings, day: date | None) -> date:
    """The day asked for, kept between today and the booking horizon."""
    return min(max(day or today(settings), today(settings)), last_bookable_day(settings))


def day_steps(settings: Settings, day: date) -> dict[str, date | None]:
    """The bounds of a day picker and the days before and after `day` that can still be booked (None: none)."""
    first, last = today(settings), last_bookable_day(settings)
    return {
        "today": first,
        "last_day": last,
        "previous_day": day - timedelta(days=1) if day > first else None,
        "next_day": day + timedelta(days=1) if day < last else None,
    }


def slots_on(session: Session, settings: Settings, doctor_id: int, day: date, kind: str | None, ignore: int | None):
    """The doctor's free slots on the clinic's `day` (the agendas' slot logic), those of `kind` (or `any`) if given."""
    slots = free_slots_of(session, settings.agenda, doctor_id, day, day, datetime.now(UTC), ignore)
    return [s for s in slots if kind is None or s.kind in (kind, "any")]


# --- A patient's appointments -------------------------------------------------------------------------------------


@router.get("/portal/appointments", name="appointments", dependencies=PATIENT)
def appointments(request: Request, session: SessionDep, user: WebUser) -> Response:
    now = datetime.now(UTC)
    upcoming = service.read_many(
        session, request, user.principal, [Appointment.status == "confirmed", Appointment.ends_at > now]
    )
    past = service.read_many(
        session,
        request,
        user.principal,
        [or_(Appointment.status == "cancelled", Appointment.ends_at <= now)],
        newest_first=True,
        limit=PAST_SHOWN,
    )
    doctors = service.names(session, [a.doctor_id for a in upcoming + past])
    return render(request, "appointments/list.html", {"upcoming": upcoming, "past": past, "doctors": doctors})


# --- Booking ------------------------------------------------------------------------------------------------------


@dataclass
class Booking:
    """What the booking page shows: the filters as chosen, the doctors they leave, the chosen doctor's free slots."""

    specialty: str | None
    kind: str | None
    doctor_id: int | None
    day: date
    specialties: list[str]
    doctors: list[service.DoctorChoice]
    slots: list[Slot]


def booking(
    session: Session,
    settings: Settings,
    specialty: str | None,
    kind: str | None,
    doctor_id: int | None,
    day: date | None,
) -> Booking:
    doctors = service.bookable_doctors(session, specialty, kind)
    if doctor_id not in {d.id for d in doctors}:  # filtered out (or none chosen): one doctor left is the choice
        doctor_id = doctors[0].id if len(doctors) == 1 else None
    chosen_day = bookable_day(settings, day)
    slots = slots_on(session, settings, doctor_id, chosen_day, kind, None) if doctor_id else []
    return Booking(specialty, kind, doctor_id, chosen_day, service.specialties(session), doctors, slots)


def booking_page(
    request: Request,
    settings: Settings,
    found: Booking,
    form: Form | None = None,
    status_code: int = 200,
    listed_for: str | None = None,
) -> Response:
    """The booking page; to htmx, its results part, and the doctor list too when it was listed for other filters
    (`listed_for`, what the page sent) than these."""
    errors = form.errors if form else {}
    now_listed_for = f"{found.specialty or ''}|{found.kind or ''}"
    context = {
        "booking": found,
        "chosen": {
            "specialty": found.specialty or "",
            "kind": found.kind or "",
            "doctor": found.doctor_id or "",
            "day": found.day.isoformat(),
        },
        "listed_for": now_listed_for,
        "oob": partial(request) and listed_for != now_listed_for,
        "errors": errors,
        "other_errors": {k: v for k, v in errors.items() if k != "starts_at"},  # starts_at's sits with the slots
        **day_steps(settings, found.day),
    }
    name = "appointments/_booking.html" if partial(request) else "appointments/book.html"
    response = render(request, name, context, status_code=status_code)
    response.headers["Vary"] = "HX-Request"
    return response


@router.get("/portal/appointments/book", name="book", dependencies=PATIENT)
def book_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    specialty: Annotated[str | None, Query(max_length=120)] = None,
    kind: Annotated[Kind | Literal[""] | None, Query()] = None,
    doctor: Annotated[str | None, Query(pattern=r"^\d{0,10}$")] = None,
    day: Annotated[str | None, Query(pattern=r"^(\d{4}-\d{2}-\d{2})?$")] = None,
    listed_for: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Filters arrive from a GET form, so an unset one is an empty string."""
    found = booking(
        session,
        settings,
        specialty or None,
        kind or None,
        int(doctor) if doctor else None,
        _day(day),
    )
    return booking_page(request, settings, found, listed_for=listed_for)


def _book(session: Session, settings: Settings, user: SignedIn, body: NewAppointment) -> Appointment:
    return service.book(session, settings, user.principal, body)


@router.post("/portal/appointments/book", dependencies=PATIENT)
async def book(request: Request, session: SessionDep, settings: SettingsDep, user: WebUser) -> Response:
    form = await read_form(request, NewAppointment)
    t = translator(request)
    status_code = 422
    if form.data is not None:
        try:
            appointment = await run_in_threadpool(_book, session, settings, user, form.data)
        except (HTTPException, RequestValidationError) as error:
            form.error("starts_at", refused(t, error))
            status_code = 409
        else:
            flash = t.gettext("Booked: %(when)s.", when=when(t, appointment.starts_at))
            return redirect(request, "/portal/appointments", flash=flash)
    elif "starts_at" in form.errors:
        form.errors["starts_at"] = t.gettext("Choose a free time.")
    values = form.values
    found = await run_in_threadpool(
        booking,
        session,
        settings,
        str(values.get("specialty") or "") or None,
        str(values.get("kind") or "") or None,
        form.data.doctor_id if form.data else _int(values.get("doctor_id")),
        _day(values.get("day")),
    )
    return booking_page(request, settings, found, form, status_code=status_code)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() and len(value) <= 10 else None


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


# --- One appointment ----------------------------------------------------------------------------------------------


def detail_context(
    session: Session, request: Request, settings: Settings, user: SignedIn, appointment_id: int, day: date | None
) -> dict[str, Any]:
    """What the appointment's page shows: the appointment (404 unless the user may see it), who it is with, what
    the user may still do with it and, for a patient who may reschedule, the free slots of the chosen day."""
    appointment = service.read_one(session, request, user.principal, appointment_id)
    now = datetime.now(UTC)
    deadline = service.change_deadline(settings, appointment, user.principal)
    changeable = appointment.status == "confirmed" and appointment.ends_at > now
    may_change = changeable and (deadline is None or now <= deadline)
    chosen_day = bookable_day(settings, day or appointment.starts_at.astimezone(settings.agenda.zone).date())
    may_reschedule = may_change and user.role == "patient"
    slots = []
    if may_reschedule:
        slots = slots_on(session, settings, appointment.doctor_id, chosen_day, appointment.kind, appointment.id)
    in_it = user.id in (appointment.patient_id, appointment.doctor_id)
    closed = video.closed(settings, appointment, now) if in_it else None
    return {
        "appointment": appointment,
        "names": service.names(session, [appointment.patient_id, appointment.doctor_id]),
        "specialty": service.specialty_of(session, appointment.doctor_id),
        "deadline": deadline,
        "too_late": changeable and not may_change,
        "may_cancel": may_change,
        "may_reschedule": may_reschedule,
        "day": chosen_day,
        "slots": slots,
        **day_steps(settings, chosen_day),
        "video_open": in_it and closed is None,
        "video_opens_at": video.opens_at(settings, appointment) if closed and closed.reason == "too_early" else None,
        "errors": {},
    }


def detail_page(request: Request, context: dict[str, Any], status_code: int = 200) -> Response:
    name = "appointments/_reschedule_slots.html" if partial(request) else "appointments/detail.html"
    response = render(request, name, context, status_code=status_code)
    response.headers["Vary"] = "HX-Request"
    return response


@router.get("/portal/appointments/{appointment_id}", name="appointment")
def appointment_page(
    appointment_id: PathId,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: WebUser,
    day: Annotated[str | None, Query(pattern=r"^(\d{4}-\d{2}-\d{2})?$")] = None,
) -> Response:
    context = detail_context(session, request, settings, user, appointment_id, _day(day))
    return detail_page(request, context)


def _reschedule(session: Session, settings: Settings, user: SignedIn, appointment_id: int, body: Reschedule):
    return service.reschedule(session, settings, user.principal, appointment_id, body)


@router.post("/portal/appointments/{appointment_id}/reschedule", dependencies=PATIENT)
async def reschedule(
    appointment_id: PathId, request: Request, session: SessionDep, settings: SettingsDep, user: WebUser
) -> Response:
    form = await read_form(request, Reschedule)
    t = translator(request)
    status_code = 422
    if form.data is not None:
        try:
            moved = await run_in_threadpool(_reschedule, session, settings, user, appointment_id, form.data)
        except (HTTPException, RequestValidationError) as error:
            form.error("starts_at", refused(t, error))
            status_code = 409
        else:
            flash = t.gettext("Moved to %(when)s.", when=when(t, moved.starts_at))
            return redirect(request, f"/portal/appointments/{moved.id}", flash=flash)
    else:
        form.errors["starts_at"] = t.gettext("Choose a free time.")
    context = await run_in_threadpool(
        detail_context, session, request, settings, user, appointment_id, _day(form.values.get("day"))
    )
    context["errors"] = form.errors
    return render(request, "appointments/detail.html", context, status_code=status_code)


@router.get("/portal/appointments/{appointment_id}/cancel", name="cancel_appointment")
def cancel_page(
    appointment_id: PathId, request: Request, session: SessionDep, settings: SettingsDep, user: WebUser
) -> Response:
    context = detail_context(session, request, settings, user, appointment_id, None)
    return render(request, "appointments/cancel.html", {**context, "values": {}})


def _cancel(session: Session, settings: Settings, user: SignedIn, appointment_id: int, body: Cancellation):
    return service.cancel(session, settings, user.principal, appointment_id, body)


@router.post("/portal/appointments/{appointment_id}/cancel")
async def cancel(
    appointment_id: PathId, request: Request, session: SessionDep, settings: SettingsDep, user: WebUser
) -> Response:
    form = await read_form(request, Cancellation)
    t = translator(request)
    if form.data is not None:
        try:
            await run_in_threadpool(_cancel, session, settings, user, appointment_id, form.data)
        except RequestValidationError:  # doctors and staff give a reason
            form.error("reason", t.gettext(REASON_REQUIRED))
        except HTTPException as error:
            form.error("", refused(t, error))
        else:
            back = "/portal/appointments" if user.role == "patient" else f"/portal/appointments/{appointment_id}"
            return redirect(request, back, flash=t.gettext("The appointment is cancelled."))
    context = await run_in_threadpool(detail_context, session, request, settings, user, appointment_id, None)
    context.update(errors=form.errors, values=form.values)
    return render(request, "appointments/cancel.html", context, status_code=409 if "" in form.errors else 422)


def _room(session: Session, settings: Settings, user: SignedIn, appointment_id: int) -> str:
    return video.room_token(session, settings, user.principal, appointment_id).join_url


@router.post("/portal/appointments/{appointment_id}/video", dependencies=VISITORS)
async def join_video(
    appointment_id: PathId, request: Request, session: SessionDep, settings: SettingsDep, user: WebUser
) -> Response:
    """Into the video room (Jitsi) with a fresh token, when it is open; otherwise back, saying why."""
    try:
        url = await run_in_threadpool(_room, session, settings, user, appointment_id)
    except Refusal as error:
        return redirect(request, f"/portal/appointments/{appointment_id}", flash=refused(translator(request), error))
    return RedirectResponse(url, status_code=303)


# --- A doctor's agenda --------------------------------------------------------------------------------------------


@router.get("/portal/agenda", name="agenda", dependencies=DOCTOR)
def agenda(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: WebUser,
    view: Annotated[Literal["day", "week"], Query()] = "day",
    day: Annotated[str | None, Query(pattern=r"^(\d{4}-\d{2}-\d{2})?$")] = None,
) -> Response:
    """The doctor's appointments of one day (the clinic's), or of the week (Monday to Sunday) around it."""
    zone = settings.agenda.zone
    shown = _day(day) or today(settings)
    first = shown - timedelta(days=shown.weekday()) if view == "week" else shown
    last = first + timedelta(days=6 if view == "week" else 0)
    start, end = instant(first, datetime.min.time(), zone), instant(last + timedelta(days=1), datetime.min.time(), zone)
    listed = service.read_many(
        session, request, user.principal, [Appointment.starts_at < end, Appointment.ends_at > start]
    )
    days: dict[date, list[Appointment]] = {first + timedelta(days=n): [] for n in range((last - first).days + 1)}
    for appointment in listed:
        days.setdefault(max(appointment.starts_at.astimezone(zone).date(), first), []).append(appointment)
    step = timedelta(days=7 if view == "week" else 1)
    return render(
        request,
        "appointments/agenda.html",
        {
            "view": view,
            "day": shown,
            "days": days,
            "patients": service.names(session, [a.patient_id for a in listed]),
            "previous": shown - step,
            "next": shown + step,
            "today": today(settings),
        },
    )
