"""Free slots from a weekly schedule, pure: no database, no clock (the caller passes `not_before`).

A schedule is wall-clock hours in the clinic's zone ("Mondays 08:00-12:00, 30-minute slots"); slots are instants.
Each block's start and end are placed in the zone on the day in question and the block is cut into slots of its
length in real (absolute) time, so on a night the clocks move the doctor still works the block's real hours:
01:00-04:00 on a spring-forward night is two hours (four 30-minute slots), on a fall-back night four hours."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

KINDS = ("in_person", "video", "any")  # any: the patient chooses when booking
MIN_SLOT_MINUTES, MAX_SLOT_MINUTES = 5, 240


@dataclass(frozen=True)
class Block:
    """One weekly block of a doctor's schedule."""

    weekday: int  # 0 = Monday ... 6 = Sunday (date.weekday())
    starts: time
    ends: time  # 00:00: midnight at the end of the day
    slot_minutes: int
    kind: str


@dataclass(frozen=True)
class Slot:
    starts_at: datetime  # UTC
    ends_at: datetime
    kind: str


def instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock `at` on `day` in `zone`. A time the clocks skip (02:30 on a spring-forward night)
    resolves to the same distance after the jump (03:30); a time they repeat, to its first occurrence."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def schedule_problems(blocks: Sequence[Block]) -> list[tuple[str, str]]:
    """(field, problem) for every block that cannot be a schedule: empty, too short for one slot, or overlapping
    another block of the same weekday. Field names follow the request body (`blocks.<index>.<field>`)."""
    problems: list[tuple[str, str]] = []
    for index, block in enumerate(blocks):
        where = f"blocks.{index}"
        if block.kind not in KINDS:
            problems.append((f"{where}.kind", f"{block.kind!r} is invalid; allowed: {', '.join(KINDS)}"))
        if not 0 <= block.weekday <= 6:
            problems.append((f"{where}.weekday", f"{block.weekday} is invalid; allowed: 0 (Monday) to 6 (Sunday)"))
        if not MIN_SLOT_MINUTES <= block.slot_minutes <= MAX_SLOT_MINUTES:
            problems.append(
                (
                    f"{where}.slot_minutes",
                    f"{block.slot_minutes} is invalid; allowed: {MIN_SLOT_MINUTES} to {MAX_SLOT_MINUTES}",
                )
            )
        length = _end_minutes(block) - _minutes(block.starts)
        if length <= 0:
            problems.append((f"{where}.ends", f"{block.ends:%H:%M} is not after starts {block.starts:%H:%M}"))
        elif length < block.slot_minutes:
            span = f"{block.starts:%H:%M}-{block.ends:%H:%M}"
            problems.append((f"{where}.ends", f"{span} is shorter than one {block.slot_minutes}-minute slot"))
    for index, block in enumerate(blocks):
        for other_index in range(index):
            other = blocks[other_index]
            if (
                other.weekday == block.weekday
                and _minutes(block.starts) < _end_minutes(other)
                and _minutes(other.starts) < _end_minutes(block)
            ):
                problems.append(
                    (
                        f"blocks.{index}",
                        f"{block.starts:%H:%M}-{block.ends:%H:%M} overlaps blocks.{other_index} "
                        f"({other.starts:%H:%M}-{other.ends:%H:%M}) on weekday {block.weekday}",
                    )
                )
    return problems


def _minutes(at: time) -> int:
    return at.hour * 60 + at.minute


def _end_minutes(block: Block) -> int:
    return 24 * 60 if block.ends == time(0) else _minutes(block.ends)


class Busy:
    """Disjoint, sorted busy intervals (bookings and exceptions merged), asked whether a slot overlaps any."""

    def __init__(self, intervals: Iterable[tuple[datetime, datetime]]):
        merged: list[list[datetime]] = []
        for start, end in sorted(intervals):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.starts = [start for start, _ in merged]
        self.ends = [end for _, end in merged]

    def overlaps(self, start: datetime, end: datetime) -> bool:
        # The last interval starting before `end` is the only one that can reach into [start, end).
        i = bisect.bisect_left(self.starts, end) - 1
        return i >= 0 and self.ends[i] > start


def days(first: date, last: date) -> Iterable[date]:
    for offset in range((last - first).days + 1):
        yield first + timedelta(days=offset)


def schedule_slots(blocks: Sequence[Block], first_day: date, last_day: date, zone: ZoneInfo) -> list[Slot]:
    """Every slot the schedule offers on the clinic's days first_day..last_day (inclusive), busy or not."""
    by_weekday: dict[int, list[Block]] = {}
    for block in sorted(blocks, key=lambda b: b.starts):
        by_weekday.setdefault(block.weekday, []).append(block)
    slots = []
    for day in days(first_day, last_day):
        for block in by_weekday.get(day.weekday(), ()):
            start = instant(day, block.starts, zone)
            end = (
                instant(day + timedelta(days=1), time(0), zone)
                if block.ends == time(0)
                else instant(day, block.ends, zone)
            )
            step = timedelta(minutes=block.slot_minutes)
            while start + step <= end:
                slots.append(Slot(start, start + step, block.kind))
                start += step
    return slots


def free_slots(
    blocks: Sequence[Block],
    first_day: date,
    last_day: date,
    zone: ZoneInfo,
    busy: Iterable[tuple[datetime, datetime]],
    not_before: datetime,
) -> list[Slot]:
    """The schedule's slots on first_day..last_day that start at or after `not_before` and overlap nothing busy."""
    taken = Busy(busy)
    return [
        slot
        for slot in schedule_slots(blocks, first_day, last_day, zone)
        if slot.starts_at >= not_before and not taken.overlaps(slot.starts_at, slot.ends_at)
    ]


def free_span(
    slots: Sequence[Slot], busy: Busy, start: datetime, minutes: int | None, not_before: datetime
) -> Slot | None:
    """What a booking at `start` lasting `minutes` (default: the slot's length) takes, if it is free: `start` begins
    a slot of the schedule (`slots`: the day's, busy or not), and the span runs over that slot and, if longer, the
    ones right after it of the same kind, none of it busy. None otherwise."""
    by_start = {slot.starts_at: slot for slot in slots}
    first = by_start.get(start)
    if first is None or start < not_before:
        return None
    end = start + timedelta(minutes=minutes) if minutes else first.ends_at
    slot = first
    while True:
        if busy.overlaps(slot.starts_at, min(slot.ends_at, end)):
            return None
        if slot.ends_at >= end:
            return Slot(start, end, first.kind)
        following = by_start.get(slot.ends_at)
        if following is None or following.kind != first.kind:
            return None
        slot = following
