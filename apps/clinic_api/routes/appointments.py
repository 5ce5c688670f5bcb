"""The appointment routes; their rules are clinic_api.appointments.service's, which the portal's pages call too."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import TIMESTAMP, Text, cast, literal, select, tuple_

from clinic_api import access_log, pagination
from clinic_api.appointments import service
from clinic_api.appointments.service import visible
from clinic_api.deps import CurrentUser, SessionDep, SettingsDep, require_role
from clinic_api.errors import errors
from clinic_api.models import Appointment
from clinic_api.schemas import AppointmentOut, Cancellation, NewAppointment, Reschedule

router = APIRouter(tags=["appointments"])
SIGNED_IN = errors(r401="missing, invalid or expired token")


@router.post(
    "/appointments",
    response_model=AppointmentOut,
    status_code=201,
    dependencies=[Depends(require_role("patient", "staff", "admin"))],
    responses={
        **SIGNED_IN,
        **errors(
            r403="doctors do not book",
            r409="the slot is not free (taken, outside the schedule, in an exception or in the past)",
            r422="invalid request, an unknown doctor or patient, or a kind that is not the slot's",
        ),
    },
)
def book(body: NewAppointment, session: SessionDep, settings: SettingsDep, user: CurrentUser) -> Appointment:
    """Books one of the doctor's free slots (GET /doctors/{id}/slots), or consecutive ones for `duration_minutes`:
    the appointment is of the slot's kind (the patient's choice in a slot of `any` kind). Concurrent requests for
    overlapping times: one wins, the others get 409 (the database's exclusion constraint)."""
    return service.book(session, settings, user, body)


@router.get("/appointments", response_model=list[AppointmentOut], responses={**SIGNED_IN, **pagination.NEXT_PAGE})
def list_appointments(
    request: Request,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    limit: pagination.Limit = pagination.PAGE_DEFAULT,
    cursor: pagination.Cursor = None,
) -> list[Appointment]:
    """The caller's appointments by start, a page at a time (the next page's URL in the `Link` header). A doctor's or
    staff's read is in each listed patient's access log."""
    # The position is PostgreSQL's own text of the start, not Python's: an instant Python cannot hold (read as the
    # nearest one it can, db.StoredInstantLoader) then still compares as stored, and a walk cannot loop on it.
    starts_at = cast(Appointment.starts_at, Text).label("position")
    query = (
        select(Appointment, starts_at)
        .where(visible(user))
        .order_by(Appointment.starts_at, Appointment.id)
        .limit(limit + 1)
    )
    if after := pagination.start(request, "appointments", user.id, cursor, (str, int)):
        after_start, after_id = after
        start = cast(literal(after_start, Text), TIMESTAMP(timezone=True))
        query = query.where(tuple_(Appointment.starts_at, Appointment.id) > tuple_(start, literal(after_id)))
    rows = session.execute(query).all()
    page = [appointment for appointment, _ in rows[:limit]]
    access_log.record(session, request, user.id, "appointments.list", [a.patient_id for a in page])
    session.commit()
    following = pagination.next_cursor(request, "appointments", user.id, rows, limit, lambda row: [row[1], row[0].id])
    pagination.link_next(request, response, following)
    return page


@router.post(
    "/appointments/{appointment_id}/reschedule",
    response_model=AppointmentOut,
    dependencies=[Depends(require_role("patient", "staff", "admin"))],
    responses={
        **SIGNED_IN,
        **errors(
            r403="doctors do not reschedule",
            r404="appointment not found (or not the caller's)",
            r409="cancelled, past the patient's cutoff, or the new slot is not free",
            r422="invalid request, or a kind that is not the new slot's",
        ),
    },
)
def reschedule(
    appointment_id: int, body: Reschedule, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> Appointment:
    """Moves the appointment to another free slot of the same doctor in one change: the old slot is freed and the
    new one taken in one statement, or nothing changes. A patient may do it up to the cutoff before the start."""
    return service.reschedule(session, settings, user, appointment_id, body)


@router.post(
    "/appointments/{appointment_id}/cancel",
    response_model=AppointmentOut,
    responses={
        **SIGNED_IN,
        **errors(
            r404="appointment not found (or not the caller's)",
            r409="past the patient's cutoff",
            r422="a doctor or staff member gave no reason",
        ),
    },
)
def cancel(
    appointment_id: int,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    body: Cancellation | None = None,
) -> Appointment:
    """A patient cancels up to the cutoff before the start (a reason is optional); doctors and staff cancel any time,
    with a reason the patient receives by email. Cancelling a cancelled appointment changes nothing."""
    return service.cancel(session, settings, user, appointment_id, body)
