"""Request and response bodies."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime
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

from clinic_api import cpf
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
Language = Literal["pt-BR", "en"]
Purpose = Literal["care", "research", "communications"]
"""care: health data processed to treat the patient and keep their record (required to be a patient); research:
their records used, de-identified, in research; communications: news and campaigns by email."""
UF = Literal[
    "AC", "AL", "AP", "AM", "BA", "CE", "DF", "ES", "GO", "MA", "MT", "MS", "MG", "PA",
    "PB", "PR", "PE", "PI", "RJ", "RN", "RS", "RO", "RR", "SC", "SP", "SE", "TO",
]  # fmt: skip
PHONE = r"^\+?[0-9][0-9 ()-]{7,19}$"


class ConsentIn(BaseModel):
    notice_version: Text = Field(min_length=1, max_length=20)
    """The version of the privacy notice the patient read (GET /privacy/notice)."""
    purposes: list[Purpose] = Field(max_length=3)
    """What the patient agrees to; `care` is required (without it the clinic cannot keep their record)."""

    @field_validator("purposes")
    @classmethod
    def _care_and_unique(cls, value: list[str]) -> list[str]:
        if "care" not in value:
            raise ValueError("must include 'care'; to withdraw it, ask for erasure (POST /me/erasure)")
        return sorted(set(value))


class Registration(BaseModel):
    """A patient registers with an email, a name and the language of their emails; the password is chosen through
    the link emailed to them."""

    email: EmailStr
    full_name: Name
    language: Language = "pt-BR"


class NewUser(Registration):
    password: Text = Field(min_length=12, max_length=128)
    role: Literal["doctor", "staff", "admin", "patient"]


class Accepted(BaseModel):
    detail: str


class VerifyEmail(BaseModel):
    token: Text = Field(min_length=1, max_length=2048)
    """From the link in the verification email (after `#token=`)."""
    password: Text = Field(min_length=12, max_length=128)
    consent: ConsentIn
    """The owner of the address, choosing the password, accepts the privacy notice: recorded with the account."""


class PasswordResetRequest(BaseModel):
    email: EmailStr


class PasswordReset(BaseModel):
    token: Text = Field(min_length=1, max_length=2048)
    """From the link in the password-reset email (after `#token=`)."""
    password: Text = Field(min_length=12, max_length=128)
    """The new password (the policy of registration)."""


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
    language: str
    disabled_at: UtcDatetime | None


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


ExamType = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
"""What is examined, e.g. "Complete blood count": trimmed, 1 to 120 characters, no control characters."""


class NewExam(BaseModel):
    patient_id: Id
    exam_type: ExamType
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

    exam_type: ExamType | None = None
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


class PatientProfileIn(BaseModel):
    """Only the fields sent change; `null` clears an optional one (not the CPF: a CPF is corrected, never removed)."""

    full_name: Name | None = None
    language: Language | None = None
    date_of_birth: date | None = None
    phone: str | None = Field(None, pattern=PHONE)
    emergency_contact_name: Name | None = None
    emergency_contact_phone: str | None = Field(None, pattern=PHONE)
    cpf: Text | None = Field(None, max_length=14, description="11 digits, with or without dots and dash")

    @field_validator("cpf")
    @classmethod
    def _cpf(cls, value: str | None) -> str | None:
        if value is not None and not cpf.is_valid(value):
            raise ValueError("is not a valid CPF (11 digits whose two check digits match)")
        return cpf.digits(value) if value is not None else None

    @field_validator("date_of_birth")
    @classmethod
    def _born(cls, value: date | None) -> date | None:
        if value is not None and not date(1900, 1, 1) <= value <= date.today():
            raise ValueError("must be between 1900-01-01 and today")
        return value


class PatientProfileOut(BaseModel):
    date_of_birth: date | None
    phone: str | None
    emergency_contact_name: str | None
    emergency_contact_phone: str | None
    cpf: str | None
    """Masked: ***.***.***-25."""


class DoctorProfileIn(BaseModel):
    specialty: Text = Field(min_length=1, max_length=120)
    crm_number: str = Field(pattern=r"^[0-9]{4,10}$")
    crm_state: UF
    bio: Text = Field("", max_length=2000)


class DoctorProfileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    specialty: str
    crm_number: str
    crm_state: str
    bio: str


class DoctorOut(BaseModel):
    id: int
    full_name: str
    profile: DoctorProfileOut | None


class ProfileOut(BaseModel):
    id: int
    email: str
    full_name: str
    role: str
    language: str
    disabled: bool
    patient: PatientProfileOut | None = None
    doctor: DoctorProfileOut | None = None


class PasswordChange(BaseModel):
    current_password: Text = Field(min_length=1, max_length=128)
    new_password: Text = Field(min_length=12, max_length=128)


class ConsentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    at: UtcDatetime
    notice_version: str
    purposes: list[str]


class PrivacyNotice(BaseModel):
    version: str
    purposes: list[str]


class AccessEntry(BaseModel):
    at: UtcDatetime
    who_id: int | None
    who_name: str | None
    who_role: str | None
    action: str
    exam_id: int | None
    outcome: str
    client_ip: str | None


class AuditRow(BaseModel):
    """One row of the audit log: who (`user_*`) did what to whose data or account (`subject_*`), from where."""

    id: int
    at: UtcDatetime
    user_id: int | None
    user_name: str | None
    user_role: str | None
    action: str
    outcome: str
    subject_id: int | None
    subject_name: str | None
    exam_id: int | None
    client_ip: str | None
    request_id: str
    detail: dict | None


class ErasureRequest(BaseModel):
    password: Text = Field(min_length=1, max_length=128)
    """The account's current password: erasure cannot be undone."""


class ErasureOut(BaseModel):
    erased_at: UtcDatetime
    retained_until: date
    erased: list[str]
    kept: list[str]


class ExportedExam(ExamOut):
    download_url: str | None
    """Presigned, valid for `download_expires_in` seconds; null until the result is ready."""


class PatientExport(BaseModel):
    exported_at: UtcDatetime
    account: ProfileOut
    consents: list[ConsentOut]
    appointments: list[AppointmentOut]
    exams: list[ExportedExam]
    download_expires_in: int
    access_log: list[AccessEntry]
