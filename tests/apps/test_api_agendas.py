"""Agendas over HTTP on the real PostgreSQL: schedules, exceptions, free slots, booking only free slots, reschedule,
cancellation cutoff and reasons."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from api_support import running_clinic, status_and_detail
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_api.appointments.service import REASON_REQUIRED
from clinic_api.models import OutboxEvent
from clinic_api.security import FORBIDDEN

MORNINGS = [
    {"weekday": d, "starts": "08:00", "ends": "10:00", "slot_minutes": 30, "kind": "in_person"} for d in range(7)
]


@pytest.fixture
def clinic(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        yield clinic


def events(clinic, event_type: str) -> list[dict]:
    with Session(clinic.app.state.engine) as session:
        return [
            e.payload
            for e in session.scalars(select(OutboxEvent).where(OutboxEvent.event_type == event_type).order_by("id"))
        ]


def book(clinic, patient, doctor, starts_at, **extra):
    return clinic.client.post(
        "/appointments", headers=patient["headers"], json={"doctor_id": doctor["id"], "starts_at": starts_at, **extra}
    )


def tomorrow(clinic) -> date:
    return datetime.now(ZoneInfo(clinic.app.state.settings.agenda.time_zone)).date() + timedelta(days=1)


def test_staff_set_a_weekly_schedule_and_slots_come_out_in_utc_for_the_clinics_days(clinic):
    doctor = clinic.user("doctor")
    slots = clinic.open_agenda(doctor, MORNINGS)
    assert len(slots) == 7 * 4, "four 30-minute slots a morning, seven days"
    first = tomorrow(clinic)
    # São Paulo is UTC-3: 08:00 there is 11:00Z, and a slot lasts its block's slot length.
    assert slots[0] == {"starts_at": f"{first}T11:00:00Z", "ends_at": f"{first}T11:30:00Z", "kind": "in_person"}
    schedule = clinic.client.get(f"/doctors/{doctor['id']}/schedule", headers=clinic.user("patient")["headers"])
    assert schedule.json()["time_zone"] == "America/Sao_Paulo"
    assert schedule.json()["blocks"][0] == {**MORNINGS[0], "starts": "08:00:00", "ends": "10:00:00"}


def test_a_doctor_manages_their_own_schedule_but_not_another_doctors_and_patients_none(clinic):
    doctor, other, patient = clinic.user("doctor"), clinic.user("doctor"), clinic.user("patient")
    body = {"blocks": MORNINGS[:1]}
    assert (
        clinic.client.put(f"/doctors/{doctor['id']}/schedule", headers=doctor["headers"], json=body).status_code == 200
    )
    for caller in (other, patient):
        refused = clinic.client.put(f"/doctors/{doctor['id']}/schedule", headers=caller["headers"], json=body)
        assert status_and_detail(refused) == (403, FORBIDDEN)
    missing = clinic.client.put("/doctors/999999/schedule", headers=clinic.user("staff")["headers"], json=body)
    assert status_and_detail(missing) == (404, "doctor not found")


def test_overlapping_hours_are_refused_naming_the_block_and_the_schedule_stays(clinic):
    doctor, staff = clinic.user("doctor"), clinic.user("staff")
    clinic.open_agenda(doctor, MORNINGS)
    overlapping = [MORNINGS[0], {**MORNINGS[0], "starts": "09:30", "ends": "11:00"}]
    refused = clinic.client.put(
        f"/doctors/{doctor['id']}/schedule", headers=staff["headers"], json={"blocks": overlapping}
    )
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"field": "blocks.1", "problem": "09:30-11:00 overlaps blocks.0 (08:00-10:00) on weekday 0"}
    ]
    bad_time = clinic.client.put(
        f"/doctors/{doctor['id']}/schedule",
        headers=staff["headers"],
        json={"blocks": [{**MORNINGS[0], "starts": "8 o'clock"}]},
    )
    assert bad_time.status_code == 422 and bad_time.json()["errors"][0]["field"] == "blocks.0.starts"
    assert len(clinic.slots(doctor)) == 28, "nothing stored was lost"


def test_booked_slots_and_exceptions_are_not_free_and_removing_the_exception_frees_its_days(clinic):
    doctor, staff, patient = clinic.user("doctor"), clinic.user("staff"), clinic.user("patient")
    slots = clinic.open_agenda(doctor, MORNINGS)
    booked = book(clinic, patient, doctor, slots[1]["starts_at"])
    assert booked.status_code == 201, booked.text
    assert booked.json()["ends_at"] == slots[1]["ends_at"]
    assert slots[1] not in clinic.slots(doctor) and slots[0] in clinic.slots(doctor)

    holiday = tomorrow(clinic)
    added = clinic.client.post(
        f"/doctors/{doctor['id']}/exceptions",
        headers=staff["headers"],
        json={"first_day": holiday.isoformat(), "last_day": holiday.isoformat(), "reason": "Holiday"},
    )
    assert added.status_code == 201, added.text
    # Midnight to midnight in São Paulo; the booked appointment is named so that someone cancels it.
    assert added.json()["starts_at"] == f"{holiday}T03:00:00Z"
    assert added.json()["affected_appointment_ids"] == [booked.json()["id"]]
    assert {s["starts_at"][:10] for s in clinic.slots(doctor)} == {
        (holiday + timedelta(days=n)).isoformat() for n in range(1, 7)
    }
    refused = book(clinic, patient, doctor, slots[0]["starts_at"])
    assert refused.status_code == 409 and "no free slot" in refused.json()["detail"]

    listed = clinic.client.get(f"/doctors/{doctor['id']}/exceptions", headers=doctor["headers"]).json()
    assert [e["reason"] for e in listed] == ["Holiday"]
    removed = clinic.client.delete(f"/doctors/{doctor['id']}/exceptions/{listed[0]['id']}", headers=staff["headers"])
    assert removed.status_code == 204
    assert len(clinic.slots(doctor)) == 27, "every slot but the booked one is free again"


def test_a_clinic_holiday_closes_every_doctors_agenda_that_day(clinic):
    staff, patient = clinic.user("staff"), clinic.user("patient")
    doctors = [clinic.user("doctor"), clinic.user("doctor")]
    booked = [book(clinic, patient, d, clinic.open_agenda(d, MORNINGS)[0]["starts_at"]).json()["id"] for d in doctors]
    holiday = tomorrow(clinic).isoformat()
    body = {"first_day": holiday, "last_day": holiday, "reason": "Carnaval"}
    for caller in (doctors[0], patient):
        refused = clinic.client.post("/closures", headers=caller["headers"], json=body)
        assert status_and_detail(refused) == (403, FORBIDDEN)
    closed = clinic.client.post("/closures", headers=staff["headers"], json=body)
    assert closed.status_code == 201, closed.text
    assert (closed.json()["doctor_id"], sorted(closed.json()["affected_appointment_ids"])) == (None, sorted(booked))
    for doctor in doctors:
        assert holiday not in {s["starts_at"][:10] for s in clinic.slots(doctor)}, doctor
    [listed] = clinic.client.get("/closures", headers=patient["headers"]).json()
    assert listed["reason"] == "Carnaval"
    assert clinic.client.get(f"/doctors/{doctors[0]['id']}/exceptions", headers=staff["headers"]).json() == []
    assert clinic.client.delete(f"/closures/{listed['id']}", headers=staff["headers"]).status_code == 204
    assert holiday in {s["starts_at"][:10] for s in clinic.slots(doctors[1])}


def test_an_afternoon_off_removes_only_the_slots_inside_it(clinic):
    doctor = clinic.user("doctor")
    slots = clinic.open_agenda(doctor, MORNINGS)
    span = {"starts_at": slots[1]["starts_at"], "ends_at": slots[3]["starts_at"], "reason": "Congress"}
    added = clinic.client.post(f"/doctors/{doctor['id']}/exceptions", headers=doctor["headers"], json=span)
    assert added.status_code == 201, added.text
    assert [s["starts_at"] for s in clinic.slots(doctor)][:2] == [slots[0]["starts_at"], slots[3]["starts_at"]]
    for body, field in (
        ({"reason": "x", "first_day": "2030-01-02", "last_day": "2030-01-01"}, "last_day is before first_day"),
        ({"reason": "x", "starts_at": slots[1]["starts_at"]}, "either first_day and last_day"),
        ({"reason": "", "first_day": "2030-01-01", "last_day": "2030-01-01"}, "reason"),
    ):
        refused = clinic.client.post(f"/doctors/{doctor['id']}/exceptions", headers=doctor["headers"], json=body)
        assert refused.status_code == 422 and field in refused.text, refused.text


def test_a_slot_range_must_be_ordered_bounded_and_within_the_horizon(clinic):
    doctor = clinic.user("doctor")
    clinic.open_agenda(doctor, MORNINGS)
    first = tomorrow(clinic)
    url = f"/doctors/{doctor['id']}/slots"
    cases = [
        ({"from": first.isoformat(), "to": (first - timedelta(days=1)).isoformat()}, "to", "is before from"),
        ({"from": first.isoformat(), "to": (first + timedelta(days=31)).isoformat()}, "to", "more than 31 days"),
        (
            {"from": (first + timedelta(days=370)).isoformat(), "to": (first + timedelta(days=371)).isoformat()},
            "to",
            "beyond the booking horizon",
        ),
        ({"to": first.isoformat()}, "from", "Field required"),
        ({"from": "next monday", "to": first.isoformat()}, "from", "valid date"),
    ]
    for params, field, problem in cases:
        refused = clinic.client.get(url, headers=doctor["headers"], params=params)
        assert refused.status_code == 422, params
        assert refused.json()["errors"][0]["field"] == field and problem in refused.json()["errors"][0]["problem"]
    empty = clinic.client.get("/doctors/999999/slots", headers=doctor["headers"], params=cases[0][0] | {"to": first})
    assert status_and_detail(empty) == (404, "doctor not found")


def test_days_before_today_hold_no_slot_even_from_the_first_day_of_the_calendar(clinic):
    doctor = clinic.user("doctor")
    clinic.open_agenda(doctor, MORNINGS)
    url, first = f"/doctors/{doctor['id']}/slots", tomorrow(clinic)
    # The fuzzer's case: day 0001-01-01 once made the day arithmetic overflow into a 500.
    ancient = clinic.client.get(url, headers=doctor["headers"], params={"from": "0001-01-01", "to": "0001-01-02"})
    assert ancient.status_code == 200 and ancient.json()["slots"] == []
    past_and_future = {"from": (first - timedelta(days=5)).isoformat(), "to": first.isoformat()}
    slots = clinic.client.get(url, headers=doctor["headers"], params=past_and_future).json()["slots"]
    assert slots and all(slot["starts_at"] > datetime.now(UTC).isoformat() for slot in slots)


def next_transition(zone: ZoneInfo) -> date:
    """The first day from today on whose noon the zone's UTC offset differs from the day before's."""
    day = datetime.now(zone).date()
    for _ in range(400):
        noon = datetime(day.year, day.month, day.day, 12, tzinfo=zone)
        if noon.utcoffset() != (noon - timedelta(days=1)).utcoffset():
            return day
        day += timedelta(days=1)
    raise AssertionError(f"{zone} has no DST transition within 400 days")


def test_in_a_zone_with_dst_the_same_hours_move_in_utc_across_the_next_change(postgres, clinic_aws):
    zone = ZoneInfo("America/New_York")
    with running_clinic(postgres, clinic_aws, agenda={"time_zone": "America/New_York"}) as clinic:
        doctor = clinic.user("doctor")
        nine = [{"weekday": d, "starts": "09:00", "ends": "09:30", "slot_minutes": 30} for d in range(7)]
        clinic.open_agenda(doctor, nine)
        change = next_transition(zone)
        slots = clinic.slots(doctor, first=change - timedelta(days=2), days=4)
        assert [datetime.fromisoformat(s["starts_at"]).astimezone(zone).hour for s in slots] == [9, 9, 9, 9]
        before, after = (datetime.fromisoformat(s["starts_at"]).hour for s in (slots[0], slots[-1]))
        assert {before, after} == {13, 14} and before != after, "09:00 is 14:00Z in winter, 13:00Z in summer"


def test_only_a_free_slot_can_be_booked_and_with_the_slots_kind(clinic):
    doctor, patient = clinic.user("doctor"), clinic.user("patient")
    slots = clinic.open_agenda(doctor)
    inside = datetime.fromisoformat(slots[0]["starts_at"]) + timedelta(minutes=10)
    for starts_at in (inside.isoformat(), f"{tomorrow(clinic)}T20:00:00Z"):  # inside a slot, after hours
        refused = book(clinic, patient, doctor, starts_at)
        assert refused.status_code == 409 and refused.json()["detail"].startswith("starts_at:"), starts_at
    # A Monday 08:00 of the schedule, but past; and one too far ahead.
    past = book(clinic, patient, doctor, "2020-01-06T11:00:00Z")
    assert past.status_code == 422 and "is in the past" in past.json()["errors"][0]["problem"]
    far = datetime.fromisoformat(slots[0]["starts_at"]) + timedelta(days=7 * 53)
    assert book(clinic, patient, doctor, far.isoformat()).json()["errors"] == [
        {"field": "starts_at", "problem": "starts_at is more than 365 days ahead"}
    ]
    wrong_kind = book(clinic, patient, doctor, slots[0]["starts_at"], kind="video")
    assert wrong_kind.json()["errors"] == [
        {"field": "kind", "problem": f"the slot at {slots[0]['starts_at'][:-1]}+00:00 is in_person"}
    ]
    # The same instant in another offset is the same slot.
    local = datetime.fromisoformat(slots[0]["starts_at"]).astimezone(ZoneInfo("America/Sao_Paulo")).isoformat()
    assert book(clinic, patient, doctor, local).json()["starts_at"] == slots[0]["starts_at"]


def test_reschedule_frees_the_old_slot_and_takes_the_new_in_one_change(clinic):
    doctor, patient = clinic.user("doctor"), clinic.user("patient")
    slots = clinic.open_agenda(doctor, MORNINGS)
    old, new = slots[-2]["starts_at"], slots[-1]["starts_at"]
    appointment = book(clinic, patient, doctor, old).json()
    moved = clinic.client.post(
        f"/appointments/{appointment['id']}/reschedule", headers=patient["headers"], json={"starts_at": new}
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["id"], moved.json()["starts_at"]) == (appointment["id"], new)
    free = [s["starts_at"] for s in clinic.slots(doctor)]
    assert old in free and new not in free
    [event] = events(clinic, "appointment.rescheduled")
    assert (event["previous_starts_at"], event["starts_at"]) == (old.replace("Z", "+00:00"), new.replace("Z", "+00:00"))


def test_a_reschedule_into_a_taken_slot_changes_nothing(clinic):
    doctor, ana, bia = clinic.user("doctor"), clinic.user("patient"), clinic.user("patient")
    slots = clinic.open_agenda(doctor, MORNINGS)
    mine = book(clinic, ana, doctor, slots[-2]["starts_at"]).json()
    book(clinic, bia, doctor, slots[-1]["starts_at"])
    refused = clinic.client.post(
        f"/appointments/{mine['id']}/reschedule", headers=ana["headers"], json={"starts_at": slots[-1]["starts_at"]}
    )
    assert refused.status_code == 409
    assert clinic.client.get("/appointments", headers=ana["headers"]).json()[0]["starts_at"] == slots[-2]["starts_at"]
    assert events(clinic, "appointment.rescheduled") == []


def test_two_patients_rescheduling_into_one_free_slot_at_once_one_wins_and_the_other_keeps_their_slot(clinic):
    doctor = clinic.user("doctor")
    patients = [clinic.user("patient") for _ in range(4)]
    slots = clinic.open_agenda(doctor, MORNINGS)
    target = slots[-1]["starts_at"]
    # Six days ahead, well before the patients' cutoff.
    booked = {p["id"]: book(clinic, p, doctor, slots[-8 + i]["starts_at"]).json() for i, p in enumerate(patients)}
    barrier, results = threading.Barrier(len(patients)), {}

    def move(patient):
        barrier.wait()
        results[patient["id"]] = clinic.client.post(
            f"/appointments/{booked[patient['id']]['id']}/reschedule",
            headers=patient["headers"],
            json={"starts_at": target},
        ).status_code

    threads = [threading.Thread(target=move, args=(p,)) for p in patients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [200, 409, 409, 409]
    for patient in patients:
        [now] = clinic.client.get("/appointments", headers=patient["headers"]).json()
        expected = target if results[patient["id"]] == 200 else booked[patient["id"]]["starts_at"]
        assert now["starts_at"] == expected, "the losers keep their slot"
    assert len(events(clinic, "appointment.rescheduled")) == 1


def test_a_patient_cancels_only_up_to_the_cutoff_and_staff_cancel_later_with_a_reason(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws, agenda={"patient_cutoff_hours": 48}) as clinic:
        doctor, patient, staff = clinic.user("doctor"), clinic.user("patient"), clinic.user("staff")
        slots = clinic.open_agenda(doctor, MORNINGS)
        soon = book(clinic, patient, doctor, slots[0]["starts_at"]).json()  # tomorrow: inside the 48 h
        later = book(clinic, patient, doctor, slots[-1]["starts_at"]).json()  # in a week
        too_late = clinic.client.post(f"/appointments/{soon['id']}/cancel", headers=patient["headers"])
        assert too_late.status_code == 409 and "up to 48 hours before the start" in too_late.json()["detail"]
        moved = clinic.client.post(
            f"/appointments/{soon['id']}/reschedule",
            headers=patient["headers"],
            json={"starts_at": slots[-2]["starts_at"]},
        )
        assert moved.status_code == 409, "rescheduling is held to the same cutoff"
        assert clinic.client.post(f"/appointments/{later['id']}/cancel", headers=patient["headers"]).status_code == 200

        no_reason = clinic.client.post(f"/appointments/{soon['id']}/cancel", headers=staff["headers"], json={})
        assert no_reason.json()["errors"] == [{"field": "reason", "problem": REASON_REQUIRED}]
        blank = clinic.client.post(
            f"/appointments/{soon['id']}/cancel", headers=doctor["headers"], json={"reason": "  "}
        )
        assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "reason"
        cancelled = clinic.client.post(
            f"/appointments/{soon['id']}/cancel", headers=doctor["headers"], json={"reason": "Doctor is ill"}
        )
        assert cancelled.status_code == 200
        assert (cancelled.json()["status"], cancelled.json()["cancel_reason"]) == ("cancelled", "Doctor is ill")
        by_doctor = events(clinic, "appointment.cancelled")[-1]
        assert (by_doctor["reason"], by_doctor["cancelled_by"], by_doctor["recipient_language"]) == (
            "Doctor is ill",
            "doctor",
            "pt-BR",
        )
        assert slots[0] in clinic.slots(doctor), "the cancelled slot is free again"


def test_concurrent_cancels_change_the_appointment_once_and_send_one_event(clinic):
    doctor, patient = clinic.user("doctor"), clinic.user("patient")
    appointment = book(clinic, patient, doctor, clinic.open_agenda(doctor, MORNINGS)[-1]["starts_at"]).json()
    barrier = threading.Barrier(6)

    def cancel():
        barrier.wait()
        clinic.client.post(f"/appointments/{appointment['id']}/cancel", headers=patient["headers"])

    threads = [threading.Thread(target=cancel) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(events(clinic, "appointment.cancelled")) == 1
    assert datetime.now(UTC) < datetime.fromisoformat(appointment["starts_at"])


NEW_ROUTES = {
    ("get", "/doctors/{doctor_id}/schedule"): {401, 404, 422},
    ("put", "/doctors/{doctor_id}/schedule"): {401, 403, 404, 422},
    ("get", "/doctors/{doctor_id}/exceptions"): {401, 403, 404, 422},
    ("post", "/doctors/{doctor_id}/exceptions"): {401, 403, 404, 422},
    ("delete", "/doctors/{doctor_id}/exceptions/{exception_id}"): {401, 403, 404, 422},
    ("get", "/doctors/{doctor_id}/slots"): {401, 404, 422},
    ("get", "/closures"): {401, 422},
    ("post", "/closures"): {401, 403, 422},
    ("delete", "/closures/{closure_id}"): {401, 403, 404, 422},
    ("post", "/appointments"): {401, 403, 409, 422},
    ("post", "/appointments/{appointment_id}/reschedule"): {401, 403, 404, 409, 422},
    ("post", "/appointments/{appointment_id}/cancel"): {401, 404, 409, 422},
    ("patch", "/exams/{exam_id}"): {401, 403, 404, 409, 422},
    ("post", "/exams/{exam_id}/cancel"): {401, 403, 404, 409, 422},
    ("get", "/exams/{exam_id}/results"): {401, 403, 404, 422},
    ("get", "/exams/{exam_id}/audit"): {401, 403, 404, 422},
}


def test_every_new_endpoint_documents_its_errors_with_their_body():
    from clinic_api.main import create_app
    from clinic_api.settings import Settings

    paths = create_app(Settings(outbox={"relay_enabled": False})).openapi()["paths"]
    for (method, path), codes in NEW_ROUTES.items():
        responses = paths[path][method]["responses"]
        documented = {int(code) for code in responses if code.startswith("4")}
        assert codes <= documented, (method, path, documented)  # errors.document_errors adds 413, 503, ...
        for code in codes:
            schema = responses[str(code)]["content"]["application/json"]["schema"]["$ref"]
            assert schema.endswith("/Invalid" if code == 422 else "/Problem"), (method, path, code, schema)


def test_in_a_block_of_either_kind_the_patient_chooses_video_or_in_person(clinic):
    doctor, patient = clinic.user("doctor"), clinic.user("patient")
    either = [{"weekday": d, "starts": "08:00", "ends": "09:00", "slot_minutes": 30, "kind": "any"} for d in range(7)]
    slots = clinic.open_agenda(doctor, either)
    assert {s["kind"] for s in slots} == {"any"}
    video = book(clinic, patient, doctor, slots[-1]["starts_at"], kind="video").json()
    assert video["kind"] == "video" and video["room_url"]
    plain = book(clinic, patient, doctor, slots[-2]["starts_at"]).json()
    assert (plain["kind"], plain["room_url"]) == ("in_person", None)


def test_a_path_id_outside_the_id_column_is_not_found_on_the_agenda_routes(clinic):
    staff = clinic.user("staff")
    first = tomorrow(clinic).isoformat()
    for big in (2**31, 10**30, 0, -1):
        for method, path, body in (
            ("get", f"/doctors/{big}/schedule", None),
            ("put", f"/doctors/{big}/schedule", {"blocks": MORNINGS[:1]}),
            ("get", f"/doctors/{big}/slots?from={first}&to={first}", None),
            ("post", f"/doctors/{big}/exceptions", {"reason": "x", "first_day": first, "last_day": first}),
            ("delete", f"/doctors/1/exceptions/{big}", None),
            ("delete", f"/closures/{big}", None),
            ("post", f"/appointments/{big}/reschedule", {"starts_at": f"{first}T12:00:00Z"}),
            ("patch", f"/exams/{big}", {"exam_type": "MRI"}),
            ("post", f"/exams/{big}/cancel", {"reason": "x"}),
            ("get", f"/exams/{big}/results", None),
            ("get", f"/exams/{big}/audit", None),
        ):
            kwargs = {"json": body} if body is not None else {}
            response = clinic.client.request(method.upper(), path, headers=staff["headers"], **kwargs)
            assert response.status_code == 404, (path, response.text)
