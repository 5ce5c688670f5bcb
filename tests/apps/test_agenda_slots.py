"""Slot computation, pure: wall-clock schedules in a zone without DST (São Paulo since 2019) and with it (New York),
minus busy time (bookings, exceptions) and the past."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from clinic_api.agendas.slots import Block, Busy, Slot, free_slots, free_span, schedule_problems, schedule_slots

SAO_PAULO, NEW_YORK = ZoneInfo("America/Sao_Paulo"), ZoneInfo("America/New_York")
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def starts(slots) -> list[str]:
    return [f"{s.starts_at:%Y-%m-%d %H:%M}" for s in slots]


def test_sao_paulo_hours_are_three_hours_behind_utc_all_year():
    mondays = Block(0, time(8), time(10), 30, "in_person")
    january, july = date(2027, 1, 4), date(2027, 7, 5)  # Mondays, southern summer and winter
    assert starts(schedule_slots([mondays], january, january, SAO_PAULO)) == [
        "2027-01-04 11:00",
        "2027-01-04 11:30",
        "2027-01-04 12:00",
        "2027-01-04 12:30",
    ]
    assert starts(schedule_slots([mondays], july, july, SAO_PAULO))[0] == "2027-07-05 11:00"
    assert schedule_slots([mondays], january, january, SAO_PAULO)[-1].ends_at == utc("2027-01-04 13:00")


def test_the_same_wall_clock_hour_moves_in_utc_when_new_york_changes_its_clocks():
    mondays = Block(0, time(9), time(9, 30), 30, "video")
    # DST began on Sunday 2027-03-14: 09:00 was 14:00Z the Monday before and 13:00Z the Monday after.
    slots = schedule_slots([mondays], date(2027, 3, 8), date(2027, 3, 15), NEW_YORK)
    assert starts(slots) == ["2027-03-08 14:00", "2027-03-15 13:00"]
    assert {s.kind for s in slots} == {"video"}


def test_a_block_across_the_spring_forward_jump_is_cut_in_real_time():
    sundays = Block(6, time(1), time(4), 30, "in_person")
    night = date(2027, 3, 14)  # 02:00 EST -> 03:00 EDT: 01:00-04:00 lasts two real hours
    slots = schedule_slots([sundays], night, night, NEW_YORK)
    assert starts(slots) == ["2027-03-14 06:00", "2027-03-14 06:30", "2027-03-14 07:00", "2027-03-14 07:30"]
    assert [f"{s.starts_at.astimezone(NEW_YORK):%H:%M}" for s in slots] == ["01:00", "01:30", "03:00", "03:30"]


def test_a_block_across_the_fall_back_hour_offers_the_repeated_hour_twice():
    sundays = Block(6, time(0), time(3), 60, "in_person")
    night = date(2027, 11, 7)  # 02:00 EDT -> 01:00 EST: 00:00-03:00 lasts four real hours
    slots = schedule_slots([sundays], night, night, NEW_YORK)
    assert [f"{s.starts_at.astimezone(NEW_YORK):%H:%M %Z}" for s in slots] == [
        "00:00 EDT",
        "01:00 EDT",
        "01:00 EST",
        "02:00 EST",
    ]
    assert len({s.starts_at for s in slots}) == 4, "four distinct instants"


def test_busy_time_removes_exactly_the_slots_it_overlaps():
    tuesdays = Block(1, time(8), time(12), 60, "in_person")
    day = date(2027, 1, 5)  # 08:00-12:00 in São Paulo = 11:00-15:00Z
    booked = (utc("2027-01-05 12:00"), utc("2027-01-05 13:00"))  # the 09:00 slot exactly
    leave = (utc("2027-01-05 13:30"), utc("2027-01-05 13:45"))  # a quarter of an hour inside the 10:00 slot
    slots = free_slots([tuesdays], day, day, SAO_PAULO, [leave, booked], LONG_AGO)
    assert starts(slots) == ["2027-01-05 11:00", "2027-01-05 14:00"], "touching busy time does not take a slot"


def test_a_whole_day_exception_empties_that_day_only():
    weekdays = [Block(d, time(8), time(9), 30, "in_person") for d in range(5)]
    christmas = (
        datetime(2026, 12, 25, tzinfo=SAO_PAULO).astimezone(UTC),
        datetime(2026, 12, 26, tzinfo=SAO_PAULO).astimezone(UTC),
    )
    slots = free_slots(weekdays, date(2026, 12, 24), date(2026, 12, 28), SAO_PAULO, [christmas], LONG_AGO)
    assert sorted({f"{s.starts_at.astimezone(SAO_PAULO):%d}" for s in slots}) == ["24", "28"]


def test_slots_that_start_before_now_are_not_offered():
    block = Block(0, time(8), time(10), 30, "in_person")
    day = date(2027, 1, 4)
    slots = free_slots([block], day, day, SAO_PAULO, [], not_before=utc("2027-01-04 11:30"))
    assert starts(slots) == ["2027-01-04 11:30", "2027-01-04 12:00", "2027-01-04 12:30"]


def test_overlapping_blocks_of_one_weekday_are_named_and_touching_ones_are_fine():
    blocks = [
        Block(0, time(8), time(12), 30, "in_person"),
        Block(0, time(12), time(14), 30, "video"),  # touches the first: fine
        Block(1, time(8), time(12), 30, "in_person"),  # another weekday: fine
        Block(0, time(11), time(13), 30, "in_person"),
    ]
    assert schedule_problems(blocks) == [
        ("blocks.3", "11:00-13:00 overlaps blocks.0 (08:00-12:00) on weekday 0"),
        ("blocks.3", "11:00-13:00 overlaps blocks.1 (12:00-14:00) on weekday 0"),
    ]
    assert schedule_problems(blocks[:3]) == []


def test_a_block_must_end_after_it_starts_and_hold_one_slot():
    assert schedule_problems([Block(2, time(10), time(9), 30, "video")]) == [
        ("blocks.0.ends", "09:00 is not after starts 10:00")
    ]
    assert schedule_problems([Block(2, time(9), time(9, 20), 30, "video")]) == [
        ("blocks.0.ends", "09:00-09:20 is shorter than one 30-minute slot")
    ]


def test_the_minutes_left_at_the_end_of_a_block_make_no_short_slot():
    block = Block(0, time(8), time(9, 45), 30, "in_person")
    day = date(2027, 1, 4)
    slots = schedule_slots([block], day, day, SAO_PAULO)
    assert [f"{s.starts_at.astimezone(SAO_PAULO):%H:%M}" for s in slots] == ["08:00", "08:30", "09:00"]
    assert slots[-1].ends_at == utc("2027-01-04 12:30")


def test_a_longer_visit_takes_the_consecutive_free_slots_of_its_kind():
    mornings = Block(0, time(8), time(10), 30, "in_person")
    videos = Block(0, time(10), time(11), 30, "video")
    day = date(2027, 1, 4)  # 08:00 São Paulo = 11:00Z
    slots = schedule_slots([mornings, videos], day, day, SAO_PAULO)
    booked = Busy([(utc("2027-01-04 12:30"), utc("2027-01-04 13:00"))])  # 09:30-10:00
    start = utc("2027-01-04 11:00")
    assert free_span(slots, booked, start, None, LONG_AGO) == Slot(start, utc("2027-01-04 11:30"), "in_person")
    assert free_span(slots, booked, start, 45, LONG_AGO) == Slot(start, utc("2027-01-04 11:45"), "in_person")
    assert free_span(slots, booked, start, 90, LONG_AGO).ends_at == utc("2027-01-04 12:30")
    assert free_span(slots, booked, start, 120, LONG_AGO) is None, "runs into the 09:30 booking"
    assert free_span(slots, Busy([]), utc("2027-01-04 12:30"), 60, LONG_AGO) is None, "the next slot is video"
    assert free_span(slots, Busy([]), utc("2027-01-04 11:10"), None, LONG_AGO) is None, "not a slot's start"
    assert free_span(slots, Busy([]), start, None, not_before=utc("2027-01-04 11:01")) is None, "in the past"


def test_a_block_may_end_at_midnight_and_a_visit_run_into_the_next_days_block():
    evenings = [Block(d, time(22), time(0), 30, "video") for d in range(7)]  # 00:00: the end of the day
    nights = [Block(d, time(0), time(2), 30, "video") for d in range(7)]
    assert schedule_problems(evenings + nights) == []
    day = date(2027, 1, 4)  # 22:00 São Paulo = 01:00Z the next day
    slots = schedule_slots(evenings + nights, day, day + timedelta(days=1), SAO_PAULO)
    local = [s.starts_at.astimezone(SAO_PAULO) for s in slots]
    assert [f"{t:%H:%M}" for t in local if t.date() == day and t.hour >= 22] == ["22:00", "22:30", "23:00", "23:30"]
    start = utc("2027-01-05 02:30")  # 23:30 on the 4th
    assert free_span(slots, Busy([]), start, 60, LONG_AGO) == Slot(start, utc("2027-01-05 03:30"), "video")
    overlapping = [Block(0, time(23), time(0), 30, "video"), Block(0, time(23, 30), time(23, 45), 15, "video")]
    assert [f for f, _ in schedule_problems(overlapping)] == ["blocks.1"]
