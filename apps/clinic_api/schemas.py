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

UtcDatetime = Annotated[datetime, AfterValidator(lambda moment: moment.astimezone(UTC))]
"""An instant in a response: always UTC, written with a `Z` (whatever the database session's time zone)."""


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


DEFAULT_MINUTES = 30
MIN_MINUTES, MAX_MINUTES = 5, 8 * 60  # the database's check allows up to 8 hours too


class NewAppointment(BaseModel):
    doctor_id: Id
    starts_at: datetime
    duration_minutes: int = Field(DEFAULT_MINUTES, ge=MIN_MINUTES, le=MAX_MINUTES)
    kind: Literal["in_person", "video"] = "in_person"
    patient_id: Id | None = None
    """Staff book for a patient; a patient books for themself."""

    @field_validator("starts_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("starts_at needs a time zone, e.g. 2026-12-01T14:30:00Z")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00 is in year 10000 in UTC
            raise ValueError("starts_at is outside the instants that can be stored (years 1 to 9999 in UTC)") from None


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


class DownloadLink(BaseModel):
    url: str
    expires_in: int


class Health(BaseModel):
    status: str
