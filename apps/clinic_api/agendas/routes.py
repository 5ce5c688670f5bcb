"""Weekly schedules, exceptions and free slots of a doctor."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_api import pagination
from clinic_api.agendas.models import ScheduleException
from clinic_api.agendas.schemas import (
    ExceptionOut,
    NewException,
    NewExceptionOut,
    SlotList,
    SlotOut,
    WeeklySchedule,
    WeeklyScheduleOut,
)
from clinic_api.agendas.service import (
    blocks_of,
    delete_exception,
    doctor_or_404,
    exceptions_page,
    free_slots_of,
    may_manage,
    replace_blocks,
)
from clinic_api.agendas.slots import instant
from clinic_api.deps import CurrentUser, SessionDep, SettingsDep, require_role
from clinic_api.errors import errors, invalid
from clinic_api.models import Appointment
from clinic_api.security import Principal
from clinic_api.settings import Settings

router = APIRouter(tags=["agendas"])
MANAGERS = require_role("doctor", "staff", "admin")
STAFF = require_role("staff", "admin")
CLOSURE_NOT_FOUND = "closure not found"
SIGNED_IN = errors(r401="missing, invalid or expired token")
MANAGE = errors(
    r401="missing, invalid or expired token",
    r403="a doctor manages only their own agenda; patients none",
    r404="doctor not found",
    r422="invalid request: the fields at fault",
)


@router.get(
    "/doctors/{doctor_id}/schedule",
    response_model=WeeklyScheduleOut,
    responses={**SIGNED_IN, **errors(r404="doctor not found", r422="invalid request: the fields at fault")},
)
def get_schedule(doctor_id: int, session: SessionDep, settings: SettingsDep, _user: CurrentUser) -> WeeklyScheduleOut:
    doctor_or_404(session, doctor_id)
    return WeeklyScheduleOut.model_validate(
        {"doctor_id": doctor_id, "time_zone": settings.agenda.time_zone, "blocks": blocks_of(session, doctor_id)},
        from_attributes=True,
    )


@router.put(
    "/doctors/{doctor_id}/schedule",
    response_model=WeeklyScheduleOut,
    dependencies=[Depends(MANAGERS)],
    responses=MANAGE,
)
def replace_schedule(
    doctor_id: int, body: WeeklySchedule, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> WeeklyScheduleOut:
    """Replaces the doctor's whole weekly schedule in one transaction. Blocks of one weekday must not overlap.
    Appointments already booked stay as they are, inside the new schedule or not."""
    may_manage(user, doctor_id)
    replace_blocks(session, doctor_id, body.blocks)
    return get_schedule(doctor_id, session, settings, user)


IncludePast = Annotated[
    bool,
    Query(description="true: the ones that have ended too, from the oldest (by default, only those not ended yet)"),
]


@router.get(
    "/doctors/{doctor_id}/exceptions",
    response_model=list[ExceptionOut],
    dependencies=[Depends(MANAGERS)],
    responses={**MANAGE, **pagination.NEXT_PAGE},
)
def list_exceptions(
    doctor_id: int,
    request: Request,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    include_past: IncludePast = False,
    limit: pagination.Limit = pagination.PAGE_DEFAULT,
    cursor: pagination.Cursor = None,
) -> list[ScheduleException]:
    """The doctor's exceptions that have not ended yet (`include_past=true`: all of them), by start, a page at a time
    (the next page's URL in the `Link` header)."""
    may_manage(user, doctor_id)
    doctor_or_404(session, doctor_id)
    scope = f"doctors/{doctor_id}/exceptions"
    page, following = exceptions_page(session, request, user.id, scope, doctor_id, include_past, limit, cursor)
    pagination.link_next(request, response, following)
    return page


@router.post(
    "/doctors/{doctor_id}/exceptions",
    response_model=NewExceptionOut,
    status_code=201,
    dependencies=[Depends(MANAGERS)],
    responses=MANAGE,
)
def add_exception(
    doctor_id: int, body: NewException, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> NewExceptionOut:
    """No slot is offered inside an exception. Whole days are the clinic's days (midnight to midnight in its zone,
    whatever the clocks do). Appointments already inside it stay booked: they are listed so that someone can
    cancel them, with a reason the patient receives."""
    may_manage(user, doctor_id)
    doctor_or_404(session, doctor_id)
    return create_exception(session, settings, user, body, doctor_id)


def create_exception(
    session: Session, settings: Settings, user: Principal, body: NewException, doctor_id: int | None
) -> NewExceptionOut:
    """Stores the exception (a doctor's, or the clinic's when doctor_id is None) and lists the confirmed
    appointments already inside it."""
    if body.first_day is not None and body.last_day is not None:
        zone = settings.agenda.zone
        starts_at = instant(body.first_day, datetime.min.time(), zone)
        ends_at = instant(body.last_day + timedelta(days=1), datetime.min.time(), zone)
    else:
        starts_at, ends_at = body.starts_at, body.ends_at  # type: ignore[assignment]  # the schema requires one form
    exception = ScheduleException(
        doctor_id=doctor_id, starts_at=starts_at, ends_at=ends_at, reason=body.reason.strip(), created_by=user.id
    )
    session.add(exception)
    session.flush()
    inside = select(Appointment.id).where(
        Appointment.status == "confirmed", Appointment.starts_at < ends_at, Appointment.ends_at > starts_at
    )
    if doctor_id is not None:
        inside = inside.where(Appointment.doctor_id == doctor_id)
    affected = session.scalars(inside.order_by(Appointment.starts_at)).all()
    session.commit()
    return NewExceptionOut.model_validate(
        {**ExceptionOut.model_validate(exception).model_dump(), "affected_appointment_ids": list(affected)}
    )


@router.delete(
    "/doctors/{doctor_id}/exceptions/{exception_id}",
    status_code=204,
    response_class=Response,
    dependencies=[Depends(MANAGERS)],
    responses={**MANAGE, **errors(r404="doctor or exception not found")},
)
def remove_exception(doctor_id: int, exception_id: int, session: SessionDep, user: CurrentUser) -> Response:
    may_manage(user, doctor_id)
    delete_exception(session, doctor_id, exception_id)
    return Response(status_code=204)


@router.get(
    "/doctors/{doctor_id}/slots",
    response_model=SlotList,
    responses={
        **SIGNED_IN,
        **errors(
            r404="doctor not found", r422="from/to missing, reversed, too far apart or beyond the booking horizon"
        ),
    },
)
def list_slots(
    doctor_id: int,
    session: SessionDep,
    settings: SettingsDep,
    _user: CurrentUser,
    from_day: Annotated[date, Query(alias="from", description="first day, in the clinic's zone (YYYY-MM-DD)")],
    to_day: Annotated[
        date,
        Query(
            alias="to",
            description="last day, included: at most CLINIC_AGENDA__MAX_SLOT_RANGE_DAYS days from `from` (31 by "
            "default) and within the booking horizon",
        ),
    ],
) -> SlotList:
    """Free slots: the weekly schedule minus booked appointments and exceptions, none in the past. Days are the
    clinic's; each slot's instants are UTC."""
    agenda, horizon = settings.agenda, settings.appointments.booking_horizon_days
    now = datetime.now(UTC)
    today = now.astimezone(agenda.zone).date()
    problems = []
    if to_day < from_day:
        problems.append(("to", f"{to_day} is before from {from_day}"))
    elif (to_day - from_day).days + 1 > agenda.max_slot_range_days:
        problems.append(("to", f"{to_day} is more than {agenda.max_slot_range_days} days after from {from_day}"))
    elif to_day > today + timedelta(days=horizon):
        problems.append(("to", f"{to_day} is beyond the booking horizon ({horizon} days from today)"))
    if problems:
        raise invalid(*problems[0], *problems[1:], where="query")
    doctor_or_404(session, doctor_id)
    # No slot lies in the past, so days before today hold none: start at today (and a far-past `from` cannot make
    # the day arithmetic overflow).
    first_day = max(from_day, today)
    slots = free_slots_of(session, agenda, doctor_id, first_day, to_day, now) if first_day <= to_day else []
    return SlotList(
        doctor_id=doctor_id,
        time_zone=agenda.time_zone,
        from_day=from_day,
        to_day=to_day,
        slots=[SlotOut(starts_at=s.starts_at, ends_at=s.ends_at, kind=s.kind) for s in slots],
    )


CLOSURES = errors(
    r401="missing, invalid or expired token", r403="only staff and admins", r422="invalid request: the fields at fault"
)


@router.get(
    "/closures",
    response_model=list[ExceptionOut],
    responses={**SIGNED_IN, **pagination.NEXT_PAGE},
)
def list_closures(
    request: Request,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    include_past: IncludePast = False,
    limit: pagination.Limit = pagination.PAGE_DEFAULT,
    cursor: pagination.Cursor = None,
) -> list[ScheduleException]:
    """The days the whole clinic is closed (holidays) that have not ended yet (`include_past=true`: all of them), by
    start, a page at a time (the next page's URL in the `Link` header)."""
    page, following = exceptions_page(session, request, user.id, "closures", None, include_past, limit, cursor)
    pagination.link_next(request, response, following)
    return page


@router.post(
    "/closures", response_model=NewExceptionOut, status_code=201, dependencies=[Depends(STAFF)], responses=CLOSURES
)
def add_closure(body: NewException, session: SessionDep, settings: SettingsDep, user: CurrentUser) -> NewExceptionOut:
    """Closes the clinic (a holiday): no doctor offers a slot inside it. Appointments already inside it, of any
    doctor, are listed so that someone cancels them with a reason."""
    return create_exception(session, settings, user, body, None)


@router.delete(
    "/closures/{closure_id}",
    status_code=204,
    response_class=Response,
    dependencies=[Depends(STAFF)],
    responses={**CLOSURES, **errors(r404="closure not found")},
)
def remove_closure(closure_id: int, session: SessionDep) -> Response:
    delete_exception(session, None, closure_id, CLOSURE_NOT_FOUND)
    return Response(status_code=204)
