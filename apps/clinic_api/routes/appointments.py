from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy import select

from clinic_api import outbox
from clinic_api.db import add_unique
from clinic_api.deps import CurrentUser, SessionDep, SettingsDep, require_role
from clinic_api.models import Appointment, User
from clinic_api.schemas import AppointmentOut, NewAppointment
from clinic_api.security import Principal

router = APIRouter(tags=["appointments"])
SLOT_TAKEN = "the doctor already has an appointment at this time"
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
)
def book(body: NewAppointment, session: SessionDep, settings: SettingsDep, user: CurrentUser) -> Appointment:
    patient_id = user.id if user.role == "patient" else body.patient_id
    patient = session.get(User, patient_id) if patient_id else None
    if patient is None or patient.role != "patient":
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, NO_PATIENT)
    doctor = session.get(User, body.doctor_id)
    if doctor is None or doctor.role != "doctor":
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, NO_DOCTOR)
    room = None
    if body.kind == "video":  # 256 bits: a room link nobody can guess
        room = f"{settings.telemedicine_base_url.rstrip('/')}/{secrets.token_urlsafe(32)}"
    appointment = Appointment(
        patient_id=patient.id,
        doctor_id=doctor.id,
        starts_at=body.starts_at,
        kind=body.kind,
        status="confirmed",
        room_url=room,
    )
    add_unique(session, appointment, SLOT_TAKEN)
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


@router.get("/appointments", response_model=list[AppointmentOut])
def list_appointments(session: SessionDep, user: CurrentUser) -> list[Appointment]:
    return list(session.scalars(select(Appointment).where(visible(user)).order_by(Appointment.starts_at)))


@router.post("/appointments/{appointment_id}/cancel", response_model=AppointmentOut)
def cancel(appointment_id: int, session: SessionDep, user: CurrentUser) -> Appointment:
    appointment = session.scalar(select(Appointment).where(Appointment.id == appointment_id, visible(user)))
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
