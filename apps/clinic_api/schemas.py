"""Request and response bodies."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    computed_field,
    field_validator,
    model_validator,
)

from clinic_api.models import ID_MAX


def _printable(value: str) -> str:
    """Refuses control characters (NUL, which PostgreSQL cannot store in text; line breaks, escapes) and lone
    surrogates (no UTF-8 encoding exists for them): a name or exam type needs none, and an email built from one would
    be refused later by the notifier, where nobody sees why."""
    for position, char in enumerate(value):
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError(f"control character U+{ord(char):04X} at position {position} is not allowed")
    return value


Text = Annotated[str, AfterValidator(_printable)]
"""Free text in a request: no control characters."""
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_printable)
]
"""A person's name: trimmed, not empty once trimmed, no control characters."""
Id = Annotated[int, Field(ge=1, le=ID_MAX)]
"""A row id in a request body: the database's ids are `integer`s from 1."""


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("needs a time zone, e.g. 2026-12-01T14:30:00Z")
    return moment.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
"""An instant: always UTC in a response, written with a `Z` (whatever the database session's time zone); in a
request, any offset, but one is required."""


class Registration(BaseModel):
    """A patient registers with an email and a name; the password is chosen through the link emailed to them."""

    email: EmailStr
    full_name: Name


class NewUser(Registration):
    password: Text = Field(min_length=12, max_length=128)
    role: Literal["doctor", "staff", "admin", "patient"]


class Accepted(BaseModel):
    detail: str


class VerifyEmail(BaseModel):
    token: Text = Field(min_length=1, max_length=2048)
    """From the link in the verification email (after `#token=`)."""
    password: Text = Field(min_length=12, max_length=128)


class Login(BaseModel):
    email: EmailStr
    password: Text = Field(min_length=1, max_length=128)


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


MIN_MINUTES, MAX_MINUTES = 5, 8 * 60  # the database's check allows up to 8 hours too


class Reschedule(BaseModel):
    starts_at: datetime = Field(description="the start of one of the doctor's free slots (GET /doctors/{id}/slots)")
    kind: Literal["in_person", "video"] | None = Field(
        None, description="the slot's kind if not given; must be the slot's unless the slot is `any` (then in_person)"
    )

    @field_validator("starts_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("starts_at needs a time zone, e.g. 2026-12-01T14:30:00Z")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00 is in year 10000 in UTC
            raise ValueError("starts_at is outside the instants that can be stored (years 1 to 9999 in UTC)") from None


class NewAppointment(Reschedule):
    doctor_id: Id
    duration_minutes: int | None = Field(
        None,
        ge=MIN_MINUTES,
        le=MAX_MINUTES,
        description="default: one slot; a longer visit takes the free slots right after it, of the same kind",
    )
    patient_id: Id | None = None
    """Staff book for a patient; a patient books for themself."""


class Cancellation(BaseModel):
    reason: Text | None = Field(
        None, max_length=500, description="required from doctors and staff; sent to the patient"
    )

    @field_validator("reason")
    @classmethod
    def _trimmed(cls, value: str | None) -> str | None:
        return " ".join(value.split()) or None if value is not None else None


class AppointmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    patient_id: int
    doctor_id: int
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    kind: str
    status: str
    room_url: str | None
    cancel_reason: str | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_minutes(self) -> int:
        return int((self.ends_at - self.starts_at).total_seconds() // 60)


class NewExam(BaseModel):
    patient_id: Id
    exam_type: Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
    doctor_id: Id | None = None


class ExamOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    patient_id: int
    doctor_id: int | None
    exam_type: str
    status: str
    created_at: UtcDatetime
    cancel_reason: str | None


class ExamCorrection(BaseModel):
    """Fields to correct before the result is ready; at least one."""

    exam_type: Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)] | None = None
    doctor_id: Id | None = None

    @model_validator(mode="after")
    def _something(self) -> ExamCorrection:
        if not self.model_fields_set & {"exam_type", "doctor_id"}:
            raise ValueError("give exam_type, doctor_id or both")
        if "exam_type" in self.model_fields_set and self.exam_type is None:
            raise ValueError("exam_type cannot be removed")
        return self


class ExamCancellation(BaseModel):
    reason: Text = Field(min_length=1, max_length=500, description="sent to the patient")

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("reason is blank")
        return " ".join(value.split())


class ExamResultOut(BaseModel):
    """One uploaded result file; `replaced_at` is set once a later upload replaced it (the file is kept)."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    version_id: str | None
    size_bytes: int | None
    uploaded_by: int | None
    uploaded_at: UtcDatetime
    replaced_at: UtcDatetime | None


class AuditEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    at: UtcDatetime
    user_id: int | None
    action: str
    outcome: str
    request_id: str
    detail: dict | None


class DownloadLink(BaseModel):
    url: str
    expires_in: int


class Health(BaseModel):
    status: str
