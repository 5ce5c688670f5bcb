from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clinic_api import outbox
from clinic_api.deps import CurrentUser, SessionDep, SettingsDep, require_role
from clinic_api.errors import existing_id, invalid, responses
from clinic_api.models import Appointment, User
from clinic_api.schemas import AppointmentOut, NewAppointment
from clinic_api.security import Principal

router = APIRouter(tags=["appointments"])
SLOT_TAKEN = "the doctor already has an appointment at this time"
TOO_MANY_UPCOMING = "the patient already has {limit} upcoming appointments, the most allowed; cancel one first"
EXCLUSION_VIOLATION = "23P01"  # PostgreSQL's SQLSTATE when an exclusion constraint refuses a row
NOT_FOUND = "appointment not found"
NO_DOCTOR = "doctor_id does not name a doctor"
NO_PATIENT = "patient_id does not name a patient"


def visible(user: Principal):
    if user.role == "patient":
        return Appointment.patient_id == user.id
    if user.role == "doctor":
        return Appointment.doctor_id == user.id
    return True


@router.post(
    "/appointments",
    response_model=AppointmentOut,
    status_code=201,
    dependencies=[Depends(require_role("patient", "staff", "admin"))],
    responses=responses(409),
)
def book(body: NewAppointment, session: SessionDep, settings: SettingsDep, user: CurrentUser) -> Appointment:
    rules = settings.appointments
    now = datetime.now(UTC)
    if body.starts_at < now:
        raise invalid("starts_at", f"starts_at {body.starts_at.isoformat()} is in the past")
    if body.starts_at > now + timedelta(days=rules.booking_horizon_days):
        raise invalid("starts_at", f"starts_at is more than {rules.booking_horizon_days} days ahead")
    ends_at = body.starts_at + timedelta(minutes=body.duration_minutes)
    patient_id = user.id if user.role == "patient" else body.patient_id
    # Locked until commit: one patient's concurrent bookings are counted one after the other. NO KEY UPDATE, so that
    # other transactions' foreign-key checks on this row do not wait for it.
    patient = session.get(User, patient_id, with_for_update={"key_share": True}) if patient_id else None
    if patient is None or patient.role != "patient":
        raise invalid("patient_id", NO_PATIENT)
    doctor = session.get(User, body.doctor_id)
    if doctor is None or doctor.role != "doctor":
        raise invalid("doctor_id", NO_DOCTOR)
    upcoming = session.scalar(
        select(func.count()).where(
            Appointment.patient_id == patient.id, Appointment.status != "cancelled", Appointment.starts_at > now
        )
    )
    if upcoming is not None and upcoming >= rules.max_future_per_patient:
        raise HTTPException(status.HTTP_409_CONFLICT, TOO_MANY_UPCOMING.format(limit=rules.max_future_per_patient))
    room = None
    if body.kind == "video":  # 256 bits: a room link nobody can guess
        room = f"{settings.telemedicine_base_url.rstrip('/')}/{secrets.token_urlsafe(32)}"
    appointment = Appointment(
        patient_id=patient.id,
        doctor_id=doctor.id,
        starts_at=body.starts_at,
        ends_at=ends_at,
        kind=body.kind,
        status="confirmed",
        room_url=room,
    )
    session.add(appointment)
    try:
        session.flush()
    except IntegrityError as error:
        if getattr(error.orig, "sqlstate", None) != EXCLUSION_VIOLATION:
            raise
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, overlap(session, doctor.id, body.starts_at, ends_at)) from None
    outbox.record(
        session,
        "appointment.confirmed",
        {
            "recipient_email": patient.email,
            "recipient_name": patient.full_name,
            "appointment_id": appointment.id,
            "starts_at": appointment.starts_at.isoformat(),
            "doctor_name": doctor.full_name,
            "kind": body.kind,
            "telemedicine_url": room,
        },
    )
    session.commit()
    return appointment


def overlap(session: Session, doctor_id: int, starts_at: datetime, ends_at: datetime) -> str:
    """The 409's detail: which of the doctor's appointments is in the way (its times only: it may be another
    patient's)."""
    taken = session.execute(
        select(Appointment.starts_at, Appointment.ends_at)
        .where(
            Appointment.doctor_id == doctor_id,
            Appointment.status != "cancelled",
            Appointment.starts_at < ends_at,
            Appointment.ends_at > starts_at,
        )
        .order_by(Appointment.starts_at)
        .limit(1)
    ).first()
    if taken is None:  # cancelled in the meantime
        return SLOT_TAKEN
    return f"{SLOT_TAKEN}: {zulu(taken.starts_at)} to {zulu(taken.ends_at)}"


def zulu(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


@router.get("/appointments", response_model=list[AppointmentOut])
def list_appointments(session: SessionDep, user: CurrentUser) -> list[Appointment]:
    return list(session.scalars(select(Appointment).where(visible(user)).order_by(Appointment.starts_at)))


@router.post("/appointments/{appointment_id}/cancel", response_model=AppointmentOut, responses=responses(404))
def cancel(appointment_id: int, session: SessionDep, user: CurrentUser) -> Appointment:
    existing_id(appointment_id, NOT_FOUND)
    # Locked until commit: of concurrent cancels, the first changes the status and records the event; the others
    # wait for it, then find the appointment cancelled.
    appointment = session.scalar(
        select(Appointment).where(Appointment.id == appointment_id, visible(user)).with_for_update()
    )
    if appointment is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    if appointment.status != "cancelled":
        appointment.status = "cancelled"
        patient, doctor = session.get_one(User, appointment.patient_id), session.get_one(User, appointment.doctor_id)
        outbox.record(
            session,
            "appointment.cancelled",
            {
                "recipient_email": patient.email,
                "recipient_name": patient.full_name,
                "appointment_id": appointment.id,
                "starts_at": appointment.starts_at.isoformat(),
                "doctor_name": doctor.full_name,
            },
        )
        session.commit()
    return appointment
