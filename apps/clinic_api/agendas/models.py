"""A doctor's weekly schedule (wall-clock blocks in the clinic's zone) and its exceptions (instants)."""

from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, SmallInteger, String, Time
from sqlalchemy.orm import Mapped, mapped_column

from clinic_api.models import Base, now


class ScheduleBlock(Base):
    __tablename__ = "schedule_blocks"
    id: Mapped[int] = mapped_column(primary_key=True)
    doctor_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    weekday: Mapped[int] = mapped_column(SmallInteger)  # 0 = Monday (date.weekday())
    starts: Mapped[time] = mapped_column(Time)
    ends: Mapped[time] = mapped_column(Time)  # 00:00: midnight at the end of the day
    slot_minutes: Mapped[int] = mapped_column(SmallInteger)
    kind: Mapped[str] = mapped_column(String(16))  # in_person | video | any (the patient chooses)
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="ck_schedule_blocks_weekday"),
        CheckConstraint("ends > starts OR ends = '00:00'", name="ck_schedule_blocks_order"),
        CheckConstraint("slot_minutes BETWEEN 5 AND 240", name="ck_schedule_blocks_slot"),
        CheckConstraint("kind IN ('in_person', 'video', 'any')", name="ck_schedule_blocks_kind"),
    )


class ScheduleException(Base):
    """A time the doctor does not see patients (leave, a congress), or, without a doctor, the whole clinic is closed
    (a holiday): no slot is offered inside it."""

    __tablename__ = "schedule_exceptions"
    id: Mapped[int] = mapped_column(primary_key=True)
    doctor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)  # None: every doctor
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    __table_args__ = (CheckConstraint("ends_at > starts_at", name="ck_schedule_exceptions_order"),)
