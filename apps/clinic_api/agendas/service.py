"""What the agenda routes and the appointment routes share: the doctor, the schedule, and free slots from the
database (the pure computation is in slots.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import HTTPException, Request, status
from sqlalchemy import TIMESTAMP, Select, Text, cast, delete, literal, or_, select, tuple_
from sqlalchemy.orm import Session

from clinic_api import pagination
from clinic_api.agendas.models import ScheduleBlock, ScheduleException
from clinic_api.agendas.schemas import BlockIn
from clinic_api.agendas.slots import (
    Block,
    Busy,
    Slot,
    free_slots,
    free_span,
    instant,
    schedule_problems,
    schedule_slots,
)
from clinic_api.errors import invalid
from clinic_api.models import ID_MAX, Appointment, User
from clinic_api.security import FORBIDDEN, Principal
from clinic_api.settings import AgendaSettings

DOCTOR_NOT_FOUND = "doctor not found"
EXCEPTION_NOT_FOUND = "exception not found"


def doctor_or_404(session: Session, doctor_id: int, lock: bool = False) -> User:
    if not 1 <= doctor_id <= ID_MAX:  # no such row, and PostgreSQL would refuse to compare with it
        raise HTTPException(status.HTTP_404_NOT_FOUND, DOCTOR_NOT_FOUND)
    query = select(User).where(User.id == doctor_id, User.role == "doctor")
    doctor = session.scalar(query.with_for_update() if lock else query)
    if doctor is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, DOCTOR_NOT_FOUND)
    return doctor


def may_manage(user: Principal, doctor_id: int) -> None:
    """Staff and admins manage every doctor's agenda; a doctor manages their own."""
    if user.role == "doctor" and user.id != doctor_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, FORBIDDEN)


def blocks_of(session: Session, doctor_id: int) -> list[ScheduleBlock]:
    return list(
        session.scalars(
            select(ScheduleBlock)
            .where(ScheduleBlock.doctor_id == doctor_id)
            .order_by(ScheduleBlock.weekday, ScheduleBlock.starts)
        )
    )


def replace_blocks(session: Session, doctor_id: int, blocks: Sequence[BlockIn]) -> None:
    """Replaces the doctor's whole weekly schedule in one transaction; 422 naming `blocks.<index>.<field>` for a block
    that cannot be (empty, shorter than a slot, overlapping another of its weekday), 404 for no such doctor."""
    if problems := schedule_problems([Block(b.weekday, b.starts, b.ends, b.slot_minutes, b.kind) for b in blocks]):
        raise invalid(*problems[0], *problems[1:])
    doctor_or_404(session, doctor_id, lock=True)  # one replacement at a time per doctor
    session.execute(delete(ScheduleBlock).where(ScheduleBlock.doctor_id == doctor_id))
    session.add_all(ScheduleBlock(doctor_id=doctor_id, **b.model_dump()) for b in blocks)
    session.commit()


def exceptions_of(doctor_id: int | None, include_past: bool = False) -> Select[Any]:
    """The doctor's exceptions (None: the clinic's closures) by start, then id; only the ones that have not ended yet
    unless `include_past`."""
    owner = ScheduleException.doctor_id.is_(None) if doctor_id is None else ScheduleException.doctor_id == doctor_id
    query = select(ScheduleException).where(owner).order_by(ScheduleException.starts_at, ScheduleException.id)
    return query if include_past else query.where(ScheduleException.ends_at > datetime.now(UTC))


def exceptions_page(
    session: Session,
    request: Request,
    user_id: int,
    scope: str,
    doctor_id: int | None,
    include_past: bool,
    limit: int,
    cursor: str | None,
) -> tuple[list[ScheduleException], str | None]:
    """A page of `exceptions_of` from `cursor` (pagination.start: a 422 naming `cursor` unless this list of `scope`
    gave it to `user_id`), keyset on (start, id) as GET /appointments; and the next page's cursor (None on the last).
    The API's routes and the portal's pages page with it alike."""
    # The position is PostgreSQL's own text of the start (as GET /appointments): it compares exactly as stored.
    starts_at = cast(ScheduleException.starts_at, Text).label("position")
    query = exceptions_of(doctor_id, include_past).add_columns(starts_at).limit(limit + 1)
    if after := pagination.start(request, scope, user_id, cursor, (str, int)):
        after_start, after_id = after
        start = cast(literal(after_start, Text), TIMESTAMP(timezone=True))
        query = query.where(
            tuple_(ScheduleException.starts_at, ScheduleException.id) > tuple_(start, literal(after_id))
        )
    rows = session.execute(query).all()
    following = pagination.next_cursor(request, scope, user_id, rows, limit, lambda row: [row[1], row[0].id])
    return [exception for exception, _ in rows[:limit]], following


def delete_exception(
    session: Session, doctor_id: int | None, exception_id: int, not_found: str = EXCEPTION_NOT_FOUND
) -> None:
    """Removes one of the doctor's exceptions (None: one of the clinic's closures); 404 `not_found` for any other."""
    ids = (exception_id,) if doctor_id is None else (doctor_id, exception_id)
    if not all(1 <= i <= ID_MAX for i in ids):  # no such row, and PostgreSQL would refuse to compare with it
        raise HTTPException(status.HTTP_404_NOT_FOUND, not_found)
    owner = ScheduleException.doctor_id.is_(None) if doctor_id is None else ScheduleException.doctor_id == doctor_id
    removed = session.execute(delete(ScheduleException).where(ScheduleException.id == exception_id, owner))
    if removed.rowcount == 0:  # type: ignore[attr-defined]  # a DML result has a row count
        raise HTTPException(status.HTTP_404_NOT_FOUND, not_found)
    session.commit()


def busy(
    session: Session, doctor_id: int, start: datetime, end: datetime, ignore_appointment: int | None = None
) -> list[tuple[datetime, datetime]]:
    """The doctor's booked appointments, the doctor's exceptions and the clinic's closures that reach into
    [start, end)."""
    appointments = select(Appointment.starts_at, Appointment.ends_at).where(
        Appointment.doctor_id == doctor_id,
        Appointment.status != "cancelled",
        Appointment.starts_at < end,
        Appointment.ends_at > start,
    )
    if ignore_appointment is not None:
        appointments = appointments.where(Appointment.id != ignore_appointment)
    exceptions = select(ScheduleException.starts_at, ScheduleException.ends_at).where(
        or_(ScheduleException.doctor_id == doctor_id, ScheduleException.doctor_id.is_(None)),
        ScheduleException.starts_at < end,
        ScheduleException.ends_at > start,
    )
    return [(row.starts_at, row.ends_at) for row in session.execute(appointments.union_all(exceptions))]


def free_slots_of(
    session: Session,
    agenda: AgendaSettings,
    doctor_id: int,
    first_day: date,
    last_day: date,
    now: datetime,
    ignore_appointment: int | None = None,
) -> list[Slot]:
    """The doctor's free slots on the clinic's days first_day..last_day, none before `now`."""
    blocks = [Block(b.weekday, b.starts, b.ends, b.slot_minutes, b.kind) for b in blocks_of(session, doctor_id)]
    if not blocks:
        return []
    zone = agenda.zone
    # A day's blocks lie between its midnight and the next; a day more each side covers any zone offset.
    start = instant(first_day - timedelta(days=1), datetime.min.time(), zone)
    end = instant(last_day + timedelta(days=2), datetime.min.time(), zone)
    taken = busy(session, doctor_id, start, end, ignore_appointment)
    return free_slots(blocks, first_day, last_day, zone, taken, now)


def free_span_at(
    session: Session,
    agenda: AgendaSettings,
    doctor_id: int,
    starts_at: datetime,
    minutes: int | None,
    now: datetime,
    ignore_appointment: int | None = None,
) -> Slot | None:
    """What booking `minutes` (default: one slot) from `starts_at` would take, if it is free (slots.free_span). The
    next day's slots are looked at too: a visit may run past midnight into a block that starts then."""
    day = starts_at.astimezone(agenda.zone).date()
    blocks = [Block(b.weekday, b.starts, b.ends, b.slot_minutes, b.kind) for b in blocks_of(session, doctor_id)]
    slots = schedule_slots(blocks, day, day + timedelta(days=1), agenda.zone)
    if not slots:
        return None
    taken = Busy(busy(session, doctor_id, slots[0].starts_at, slots[-1].ends_at, ignore_appointment))
    return free_span(slots, taken, starts_at, minutes, now)
