"""Tables. The outbox lives in the same database so an event is committed with the change that caused it."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ExcludeConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID_MAX = 2**31 - 1
"""Ids are PostgreSQL `integer` columns: a number outside 1..ID_MAX names no row and cannot even be compared or
stored as one."""


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))  # patient | doctor | staff | admin
    password_hash: Mapped[str | None] = mapped_column(String(200))  # None until a self-registered owner chooses one
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    # Accounts an admin creates are verified at creation; a self-registered one when its owner follows the emailed
    # link, and until then (None) it cannot log in.
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Checked on every authenticated request (clinic_api.deps.current_user): a disabled account's tokens stop working
    # at once, and raising token_version (security.revoke_tokens) ends every token issued before.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    language: Mapped[str] = mapped_column(String(5), default="pt-BR")  # pt-BR | en: the emails' language
    # An erased patient (LGPD): contact data and login gone, the medical record kept until retained_until.
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retained_until: Mapped[date | None] = mapped_column(Date)
    # The purge of accounts never confirmed (accounts.service.purge_unconfirmed) reads only these.
    __table_args__ = (
        Index("ix_users_unconfirmed_created", "created_at", postgresql_where=text("email_verified_at IS NULL")),
    )


class PatientProfile(Base):
    __tablename__ = "patient_profiles"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    phone: Mapped[str | None] = mapped_column(String(32))
    emergency_contact_name: Mapped[str | None] = mapped_column(String(200))
    emergency_contact_phone: Mapped[str | None] = mapped_column(String(32))
    # The CPF: a keyed hash to find a patient by it (unique: one person, one record), and the value encrypted.
    cpf_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    cpf_encrypted: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, onupdate=now)


class DoctorProfile(Base):
    __tablename__ = "doctor_profiles"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    specialty: Mapped[str] = mapped_column(String(120))
    crm_number: Mapped[str] = mapped_column(String(10))
    crm_state: Mapped[str] = mapped_column(String(2))
    bio: Mapped[str] = mapped_column(Text, default="")
    # A CRM registration belongs to one doctor: the number is unique within its state's council.
    __table_args__ = (UniqueConstraint("crm_state", "crm_number", name="uq_doctor_crm"),)


class Consent(Base):
    """Append-only: each change is a new row, so the history of what was agreed, and when, is kept."""

    __tablename__ = "consents"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    notice_version: Mapped[str] = mapped_column(String(20))
    purposes: Mapped[list] = mapped_column(JSON)
    client_ip: Mapped[str | None] = mapped_column(String(45))


class LoginFailure(Base):
    """Failed logins per key (a digest of the email, the client address or both) in a fixed window: in the database,
    so every replica counts the same failures (clinic_api.throttle)."""

    __tablename__ = "login_failures"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Appointment(Base):
    __tablename__ = "appointments"
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    doctor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The end, not a duration: an index expression must be immutable, and timestamptz + interval is not.
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(16))  # in_person | video
    status: Mapped[str] = mapped_column(String(16), default="confirmed")  # confirmed | cancelled
    room_url: Mapped[str | None] = mapped_column(String(300))
    # Claimed by the one reminder pass that sends it (clinic_api.agendas.reminders); cleared by a reschedule.
    reminder_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_by: Mapped[int | None] = mapped_column(Integer)
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    __table_args__ = (
        # A doctor is in one appointment at a time, whatever races between requests: the database says no.
        ExcludeConstraint(
            ("doctor_id", "="),
            (func.tstzrange(text("starts_at"), text("ends_at")), "&&"),
            name="no_overlapping_appointments",
            using="gist",
            where=text("status <> 'cancelled'"),
        ),
        CheckConstraint(
            "ends_at > starts_at AND ends_at - starts_at <= interval '8 hours'", name="ck_appointments_duration"
        ),
        Index("ix_appointments_patient_starts", "patient_id", "starts_at"),
        Index(
            "ix_appointments_reminder_due",
            "starts_at",
            postgresql_where=text("reminder_sent_at IS NULL AND status = 'confirmed'"),
        ),
    )


class Exam(Base):
    __tablename__ = "exams"
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    doctor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    exam_type: Mapped[str] = mapped_column(String(120))
    # requested | uploaded (waiting for the file processor) | verified or quarantined (its verdict) | ready |
    # cancelled
    status: Mapped[str] = mapped_column(String(16), default="requested")
    result_key: Mapped[str | None] = mapped_column(String(300))
    result_version_id: Mapped[str | None] = mapped_column(String(1024))  # the S3 object version of the current result
    # Set by the file processor (apps/file_processor) once it has checked the uploaded result.
    result_sha256: Mapped[str | None] = mapped_column(String(64))
    result_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_by: Mapped[int | None] = mapped_column(Integer)
    cancel_reason: Mapped[str | None] = mapped_column(String(500))


class ExamResult(Base):
    """Every result file ever uploaded for an exam, the replaced ones too: each names its object and version."""

    __tablename__ = "exam_results"
    id: Mapped[int] = mapped_column(primary_key=True)
    exam_id: Mapped[int] = mapped_column(ForeignKey("exams.id"), index=True)
    result_key: Mapped[str] = mapped_column(String(300))
    version_id: Mapped[str | None] = mapped_column(String(1024))  # None: uploaded before versions were recorded
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    uploaded_by: Mapped[int | None] = mapped_column(Integer)
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    replaced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditLog(Base):
    __tablename__ = "audit_log"
    # Newest-first pages by each way the log is read (migration 0011).
    __table_args__ = (
        Index("ix_audit_log_action_id", "action", "id"),
        Index("ix_audit_log_user_id_id", "user_id", "id"),
        Index("ix_audit_log_exam_id_id", "exam_id", "id"),
        Index("ix_audit_log_subject_id_id", "subject_id", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    user_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(60))
    exam_id: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))  # granted | denied
    request_id: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[dict | None] = mapped_column(JSON)  # what changed: the object version, the fields corrected
    # Whose data or account the action was about (a patient's access log: their rows by someone else), from where.
    subject_id: Mapped[int | None] = mapped_column(Integer)
    client_ip: Mapped[str | None] = mapped_column(String(45))


class OutboxEvent(Base):
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    event_type: Mapped[str] = mapped_column(String(60))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    payload: Mapped[dict] = mapped_column(JSON)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    last_error: Mapped[str | None] = mapped_column(Text)
