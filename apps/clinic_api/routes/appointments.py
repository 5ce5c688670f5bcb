from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlalchemy import TIMESTAMP, Text, cast, func, literal, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clinic_api import access_log, outbox, pagination
from clinic_api.agendas.service import free_span_at
from clinic_api.agendas.slots import Slot
from clinic_api.deps import CurrentUser, SessionDep, SettingsDep, require_role
from clinic_api.errors import errors, existing_id, invalid
from clinic_api.models import Appointment, User
from clinic_api.schemas import AppointmentOut, Cancellation, NewAppointment, Reschedule
from clinic_api.security import Principal
from clinic_api.settings import Settings

router = APIRouter(tags=["appointments"])
SLOT_TAKEN = "the doctor already has an appointment at this time"
NOT_FREE = "starts_at: the doctor has no free slot starting at {starts_at} (see GET /doctors/{doctor_id}/slots)"
TOO_MANY_UPCOMING = "the patient already has {limit} upcoming appointments, the most allowed; cancel one first"
EXCLUSION_VIOLATION = "23P01"  # PostgreSQL's SQLSTATE when an exclusion constraint refuses a row
WRONG_KIND = "the slot at {starts_at} is {slot_kind}"
NOT_FOUND = "appointment not found"
NO_DOCTOR = "doctor_id does not name a doctor"
NO_PATIENT = "patient_id does not name a patient"
CANCELLED = "the appointment is cancelled"
TOO_LATE = "a patient may {action} only up to {hours} hours before the start ({deadline}); please call the clinic"
REASON_REQUIRED = "doctors and staff cancel with a reason the patient receives"
SIGNED_IN = errors(r401="missing, invalid or expired token")


def visible(user: Principal):
    if user.role == "patient":
        return Appointment.patient_id == user.id
    if user.role == "doctor":
        return Appointment.doctor_id == user.id
    return True


def new_room(settings: Settings) -> str:
    return f"{settings.telemedicine_base_url.rstrip('/')}/{secrets.token_urlsafe(32)}"  # 256 bits: unguessable


def notice(session: Session, appointment: Appointment, time_zone: str) -> dict[str, Any]:
    """The payload every appointment event carries: to the patient, in the patient's language, on the clinic's
    clock (`time_zone`)."""
    patient = session.get_one(User, appointment.patient_id)
    doctor = session.get_one(User, appointment.doctor_id)
    return {
        **outbox.recipient(patient),
        "appointment_id": appointment.id,
        "starts_at": appointment.starts_at.astimezone(UTC).isoformat(),
        "doctor_name": doctor.full_name,
        "kind": appointment.kind,
        "telemedicine_url": appointment.room_url,
        "time_zone": time_zone,
    }


def free_slot(
    session: Session,
    settings: Settings,
    doctor_id: int,
    body: NewAppointment | Reschedule,
    minutes: int | None,
    ignore: int | None = None,
) -> Slot:
    """What the request takes — from a free slot's start, `minutes` long (default: one slot) — with the
    appointment's kind. 422 for a start in the past or beyond the horizon or a `kind` that is not the slot's; 409 if
    it is not free (the detail names the appointment in the way, if one is)."""
    now, horizon = datetime.now(UTC), settings.appointments.booking_horizon_days
    if body.starts_at < now:
        raise invalid("starts_at", f"starts_at {body.starts_at.isoformat()} is in the past")
    if body.starts_at > now + timedelta(days=horizon):
        raise invalid("starts_at", f"starts_at is more than {horizon} days ahead")
    slot = free_span_at(session, settings.agenda, doctor_id, body.starts_at, minutes, now, ignore)
    if slot is None:
        ends_at = body.starts_at + timedelta(minutes=minutes or 1)
        in_the_way = overlap(session, doctor_id, body.starts_at, ends_at, ignore)
        detail = in_the_way or NOT_FREE.format(starts_at=body.starts_at.isoformat(), doctor_id=doctor_id)
        raise HTTPException(status.HTTP_409_CONFLICT, detail)
    if slot.kind == "any":  # the doctor sees patients either way there: the patient chooses
        return replace(slot, kind=body.kind or "in_person")
    if body.kind is not None and body.kind != slot.kind:
        raise invalid("kind", WRONG_KIND.format(starts_at=body.starts_at.isoformat(), slot_kind=slot.kind))
    return slot


def overlap(
    session: Session, doctor_id: int, starts_at: datetime, ends_at: datetime, ignore: int | None = None
) -> str | None:
    """A 409's detail when one of the doctor's appointments is in the way (its times only: it may be another
    patient's); None when none is."""
    query = (
        select(Appointment.starts_at, Appointment.ends_at)
        .where(
            Appointment.doctor_id == doctor_id,
            Appointment.status != "cancelled",
            Appointment.starts_at < ends_at,
            Appointment.ends_at > starts_at,
        )
        .order_by(Appointment.starts_at)
        .limit(1)
    )
    if ignore is not None:
        query = query.where(Appointment.id != ignore)
    taken = session.execute(query).first()
    return None if taken is None else f"{SLOT_TAKEN}: {zulu(taken.starts_at)} to {zulu(taken.ends_at)}"


def zulu(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def taken_by_a_race(session: Session, error: IntegrityError, appointment: Appointment) -> HTTPException:
    """The 409 when the exclusion constraint refused the row: another request took the time after we looked."""
    if getattr(error.orig, "sqlstate", None) != EXCLUSION_VIOLATION:
        raise error
    session.rollback()
    detail = overlap(session, appointment.doctor_id, appointment.starts_at, appointment.ends_at, appointment.id)
    return HTTPException(status.HTTP_409_CONFLICT, detail or SLOT_TAKEN)


def patient_deadline(settings: Settings, appointment: Appointment, user: Principal, action: str) -> None:
    """Patients change an appointment only up to the cutoff before its start; doctors and staff any time."""
    if user.role != "patient":
        return
    hours = settings.agenda.patient_cutoff_hours
    deadline = appointment.starts_at - timedelta(hours=hours)
    if datetime.now(UTC) > deadline:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            TOO_LATE.format(action=action, hours=hours, deadline=deadline.astimezone(UTC).isoformat()),
        )


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
    rules = settings.appointments
    patient_id = user.id if user.role == "patient" else body.patient_id
    # Locked until commit: one patient's concurrent bookings are counted one after the other. NO KEY UPDATE, so that
    # other transactions' foreign-key checks on this row do not wait for it.
    patient = session.get(User, patient_id, with_for_update={"key_share": True}) if patient_id else None
    if patient is None or patient.role != "patient":
        raise invalid("patient_id", NO_PATIENT)
    doctor = session.get(User, body.doctor_id)
    if doctor is None or doctor.role != "doctor":
        raise invalid("doctor_id", NO_DOCTOR)
    slot = free_slot(session, settings, doctor.id, body, body.duration_minutes)
    upcoming = session.scalar(
        select(func.count()).where(
            Appointment.patient_id == patient.id,
            Appointment.status != "cancelled",
            Appointment.starts_at > datetime.now(UTC),
        )
    )
    if upcoming is not None and upcoming >= rules.max_future_per_patient:
        raise HTTPException(status.HTTP_409_CONFLICT, TOO_MANY_UPCOMING.format(limit=rules.max_future_per_patient))
    appointment = Appointment(
        patient_id=patient.id,
        doctor_id=doctor.id,
        starts_at=slot.starts_at,
        ends_at=slot.ends_at,
        kind=slot.kind,
        status="confirmed",
        room_url=new_room(settings) if slot.kind == "video" else None,
    )
    session.add(appointment)
    try:
        session.flush()
    except IntegrityError as error:
        raise taken_by_a_race(session, error, appointment) from None
    outbox.record(session, "appointment.confirmed", notice(session, appointment, settings.agenda.time_zone))
    session.commit()
    return appointment


@router.get("/appointments", response_model=list[AppointmentOut], responses={**SIGNED_IN, **pagination.NEXT_PAGE})
def list_appointments(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    limit: pagination.Limit = pagination.PAGE_DEFAULT,
    cursor: pagination.Cursor = None,
) -> list[Appointment]:
    """The caller's appointments by start, a page at a time (the next page's URL in the `Link` header). A doctor's or
    staff's read is in each listed patient's access log."""
    secret = settings.auth.jwt_secret.get_secret_value()
    # The position is PostgreSQL's own text of the start, not Python's: an instant Python cannot hold (read as the
    # nearest one it can, db.StoredInstantLoader) then still compares as stored, and a walk cannot loop on it.
    starts_at = cast(Appointment.starts_at, Text).label("position")
    query = (
        select(Appointment, starts_at)
        .where(visible(user))
        .order_by(Appointment.starts_at, Appointment.id)
        .limit(limit + 1)
    )
    if cursor is not None:
        after, after_id = pagination.decode(secret, "appointments", user.id, cursor, (str, int))
        start = cast(literal(after, Text), TIMESTAMP(timezone=True))
        query = query.where(tuple_(Appointment.starts_at, Appointment.id) > tuple_(start, literal(after_id)))
    rows = session.execute(query).all()
    page = [appointment for appointment, _ in rows[:limit]]
    access_log.record(session, request, user.id, "appointments.list", [a.patient_id for a in page])
    session.commit()
    if len(rows) > limit:
        last, last_start = rows[limit - 1]
        pagination.link_next(
            request, response, pagination.encode(secret, "appointments", user.id, [last_start, last.id])
        )
    return page


def find_for_update(session: Session, appointment_id: int, user: Principal) -> Appointment:
    existing_id(appointment_id, NOT_FOUND)
    # Locked until commit: of concurrent changes (two cancels, a cancel and a reschedule), the first changes the row
    # and records the event; the others wait for it, then find it changed.
    appointment = session.scalar(
        select(Appointment).where(Appointment.id == appointment_id, visible(user)).with_for_update()
    )
    if appointment is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return appointment


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
    appointment = find_for_update(session, appointment_id, user)
    if appointment.status == "cancelled":
        raise HTTPException(status.HTTP_409_CONFLICT, CANCELLED)
    patient_deadline(settings, appointment, user, "reschedule")
    minutes = int((appointment.ends_at - appointment.starts_at).total_seconds() // 60)  # the visit keeps its length
    slot = free_slot(session, settings, appointment.doctor_id, body, minutes, ignore=appointment.id)
    if slot.starts_at == appointment.starts_at:
        return appointment
    previous = appointment.starts_at
    appointment.starts_at, appointment.ends_at = slot.starts_at, slot.ends_at
    if slot.kind != appointment.kind:
        appointment.kind = slot.kind
        appointment.room_url = new_room(settings) if slot.kind == "video" else None
    appointment.reminder_sent_at = None  # the reminder is for the new time
    try:
        session.flush()
    except IntegrityError as error:  # another request took the time after we looked: nothing of ours changed
        raise taken_by_a_race(session, error, appointment) from None
    outbox.record(
        session,
        "appointment.rescheduled",
        {
            **notice(session, appointment, settings.agenda.time_zone),
            "previous_starts_at": previous.astimezone(UTC).isoformat(),
        },
    )
    session.commit()
    return appointment


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
    appointment = find_for_update(session, appointment_id, user)
    if appointment.status == "cancelled":
        return appointment
    reason = body.reason if body else None
    if user.role != "patient" and not reason:
        raise invalid("reason", REASON_REQUIRED)
    patient_deadline(settings, appointment, user, "cancel")
    appointment.status = "cancelled"
    appointment.cancelled_at, appointment.cancelled_by, appointment.cancel_reason = datetime.now(UTC), user.id, reason
    outbox.record(
        session,
        "appointment.cancelled",
        {**notice(session, appointment, settings.agenda.time_zone), "reason": reason, "cancelled_by": user.role},
    )
    session.commit()
    return appointment
