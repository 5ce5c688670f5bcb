"""The rules of booking, rescheduling, cancelling and reading appointments, as plain functions: the API's routes
(routes/appointments.py) and the portal's pages (pages.py) call the same ones, so both check the same things, record
the same events and write the same access log."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import HTTPException, Request, status
from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clinic_api import access_log, outbox
from clinic_api.agendas.models import ScheduleBlock
from clinic_api.agendas.service import free_span_at
from clinic_api.agendas.slots import Slot
from clinic_api.errors import existing_id, invalid
from clinic_api.models import Appointment, DoctorProfile, User
from clinic_api.schemas import Cancellation, NewAppointment, Reschedule
from clinic_api.security import Principal
from clinic_api.settings import Settings

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


class Refusal(HTTPException):
    """An HTTPException that also says which rule refused, in a word a page can translate (`reason`): the API answers
    its status and English detail as before; a page shows its own sentence in the user's language."""

    def __init__(self, status_code: int, detail: str, reason: str):
        super().__init__(status_code, detail)
        self.reason = reason


def visible(user: Principal) -> ColumnElement[bool]:
    """Whose appointments the caller sees: a patient their own, a doctor theirs, staff and admins all."""
    if user.role == "patient":
        return Appointment.patient_id == user.id
    if user.role == "doctor":
        return Appointment.doctor_id == user.id
    return true()


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
        raise Refusal(status.HTTP_409_CONFLICT, detail, "not_free")
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
    return Refusal(status.HTTP_409_CONFLICT, detail or SLOT_TAKEN, "not_free")


def change_deadline(settings: Settings, appointment: Appointment, user: Principal) -> datetime | None:
    """Until when `user` may reschedule or cancel: a patient up to the cutoff before the start; doctors and staff
    any time (None)."""
    if user.role != "patient":
        return None
    return appointment.starts_at - timedelta(hours=settings.agenda.patient_cutoff_hours)


def patient_deadline(settings: Settings, appointment: Appointment, user: Principal, action: str) -> None:
    """409 when a patient is past the cutoff before the start."""
    deadline = change_deadline(settings, appointment, user)
    if deadline is not None and datetime.now(UTC) > deadline:
        hours = settings.agenda.patient_cutoff_hours
        detail = TOO_LATE.format(action=action, hours=hours, deadline=deadline.astimezone(UTC).isoformat())
        raise Refusal(status.HTTP_409_CONFLICT, detail, "too_late")


def book(session: Session, settings: Settings, user: Principal, body: NewAppointment) -> Appointment:
    """Books one of the doctor's free slots, or consecutive ones for `duration_minutes`: the appointment is of the
    slot's kind (the patient's choice in a slot of `any` kind). Concurrent requests for overlapping times: one wins,
    the others get 409 (the database's exclusion constraint). Commits."""
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
        detail = TOO_MANY_UPCOMING.format(limit=rules.max_future_per_patient)
        raise Refusal(status.HTTP_409_CONFLICT, detail, "too_many")
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


def reschedule(
    session: Session, settings: Settings, user: Principal, appointment_id: int, body: Reschedule
) -> Appointment:
    """Moves the appointment to another free slot of the same doctor in one change: the old slot is freed and the
    new one taken in one statement, or nothing changes. A patient may do it up to the cutoff before the start.
    Commits."""
    appointment = find_for_update(session, appointment_id, user)
    if appointment.status == "cancelled":
        raise Refusal(status.HTTP_409_CONFLICT, CANCELLED, "cancelled")
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


def cancel(
    session: Session, settings: Settings, user: Principal, appointment_id: int, body: Cancellation | None
) -> Appointment:
    """A patient cancels up to the cutoff before the start (a reason is optional); doctors and staff cancel any time,
    with a reason the patient receives by email. Cancelling a cancelled appointment changes nothing. Commits."""
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


def read_one(session: Session, request: Request, user: Principal, appointment_id: int) -> Appointment:
    """One appointment the caller may see; 404 for any other (as for one that does not exist). A doctor's or staff's
    read is in the patient's access log. Commits."""
    existing_id(appointment_id, NOT_FOUND)
    appointment = session.scalar(select(Appointment).where(Appointment.id == appointment_id, visible(user)))
    if appointment is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    access_log.record(session, request, user.id, "appointments.read", [appointment.patient_id])
    session.commit()
    return appointment


def read_many(
    session: Session,
    request: Request,
    user: Principal,
    where: Sequence[ColumnElement[bool]] = (),
    newest_first: bool = False,
    limit: int | None = None,
) -> list[Appointment]:
    """The caller's appointments (as `visible`) that match `where`, by start; a doctor's or staff's read is in each
    listed patient's access log, as the API's list is. Commits."""
    order = Appointment.starts_at.desc() if newest_first else Appointment.starts_at
    query = select(Appointment).where(visible(user), *where).order_by(order, Appointment.id).limit(limit)
    appointments = list(session.scalars(query))
    access_log.record(session, request, user.id, "appointments.list", [a.patient_id for a in appointments])
    session.commit()
    return appointments


def specialties(session: Session) -> list[str]:
    """The specialties of the doctors who can be booked (enabled accounts), alphabetically."""
    query = (
        select(DoctorProfile.specialty)
        .join(User, User.id == DoctorProfile.user_id)
        .where(User.role == "doctor", User.disabled_at.is_(None))
        .distinct()
        .order_by(DoctorProfile.specialty)
    )
    return list(session.scalars(query))


def bookable_doctors(session: Session, specialty: str | None = None, kind: str | None = None) -> list[DoctorChoice]:
    """Enabled doctors, by name, of `specialty` if given, whose weekly schedule offers `kind` (in_person or video:
    a block of that kind or of `any`) if given, or any schedule at all."""
    kinds = (kind, "any") if kind else ("in_person", "video", "any")
    offers = select(ScheduleBlock.id).where(ScheduleBlock.doctor_id == User.id, ScheduleBlock.kind.in_(kinds))
    query = (
        select(User.id, User.full_name, DoctorProfile.specialty)
        .outerjoin(DoctorProfile, DoctorProfile.user_id == User.id)
        .where(User.role == "doctor", User.disabled_at.is_(None), offers.exists())
        .order_by(User.full_name, User.id)
    )
    if specialty:
        query = query.where(DoctorProfile.specialty == specialty)
    return [DoctorChoice(row.id, row.full_name, row.specialty) for row in session.execute(query)]


@dataclass(frozen=True)
class DoctorChoice:
    id: int
    name: str
    specialty: str | None


def names(session: Session, user_ids: Iterable[int]) -> dict[int, str]:
    """Full names by account id (a doctor's list shows its patients', a patient's list its doctors')."""
    ids = set(user_ids)
    if not ids:
        return {}
    return {row.id: row.full_name for row in session.execute(select(User.id, User.full_name).where(User.id.in_(ids)))}


def specialty_of(session: Session, doctor_id: int) -> str | None:
    return session.scalar(select(DoctorProfile.specialty).where(DoctorProfile.user_id == doctor_id))
