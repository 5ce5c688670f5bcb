"""Request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator


class Registration(BaseModel):
    email: EmailStr
    password: str = Field(min_length=10, max_length=128)
    full_name: str = Field(min_length=1, max_length=200)


class NewUser(Registration):
    role: Literal["doctor", "staff", "admin", "patient"]


class Login(BaseModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=128)


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    email: str
    full_name: str
    role: str


class NewAppointment(BaseModel):
    doctor_id: int
    starts_at: datetime
    kind: Literal["in_person", "video"] = "in_person"
    patient_id: int | None = None
    """Staff book for a patient; a patient books for themself."""

    @field_validator("starts_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("starts_at needs a time zone, e.g. 2026-12-01T14:30:00Z")
        return value


class AppointmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    patient_id: int
    doctor_id: int
    starts_at: datetime
    kind: str
    status: str
    room_url: str | None


class NewExam(BaseModel):
    patient_id: int
    exam_type: str = Field(min_length=1, max_length=120)
    doctor_id: int | None = None


class ExamOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    patient_id: int
    doctor_id: int | None
    exam_type: str
    status: str
    created_at: datetime


class DownloadLink(BaseModel):
    url: str
    expires_in: int


class Health(BaseModel):
    status: str
