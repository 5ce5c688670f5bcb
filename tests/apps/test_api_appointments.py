"""Appointments: durations, no overlapping bookings for a doctor (the database decides, also under concurrent
requests over HTTP), a bound on a patient's upcoming bookings, and who sees and cancels what."""

from __future__ import annotations

import pytest
from api_support import at_once, future, running_clinic, served_clinic, status_and_detail
from sqlalchemy import text

from clinic_api.appointments.service import SLOT_TAKEN, TOO_MANY_UPCOMING


@pytest.fixture
def clinic(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        yield clinic


def book(clinic, who, doctor, starts_at, **fields):
    return clinic.client.post(
        "/appointments", headers=who["headers"], json={"doctor_id": doctor["id"], "starts_at": starts_at, **fields}
    )


def test_an_appointment_lasts_one_slot_unless_told_otherwise(clinic):
    doctor, patient = clinic.user("doctor"), clinic.user("patient")  # the doctor's slots: 5 minutes, all day
    plain = book(clinic, patient, doctor, future(2, 9)).json()
    assert (plain["starts_at"], plain["ends_at"], plain["duration_minutes"]) == (
        future(2, 9),
        future(2, 9, 5),
        5,
    )
    long = book(clinic, patient, doctor, future(2, 10), duration_minutes=90).json()
    assert (long["ends_at"], long["duration_minutes"]) == (future(2, 11, 30), 90)


@pytest.mark.parametrize("minutes", [0, 4, 481, 100_000])
def test_a_duration_outside_5_minutes_to_8_hours_is_refused(clinic, minutes):
    doctor, patient = clinic.user("doctor"), clinic.user("patient")
    refused = book(clinic, patient, doctor, future(), duration_minutes=minutes)
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["duration_minutes"]


def test_a_doctor_cannot_have_two_appointments_that_overlap(clinic):
    doctor, other_doctor = clinic.user("doctor"), clinic.user("doctor")
    ana, bia = clinic.user("patient"), clinic.user("patient")
    assert book(clinic, ana, doctor, future(3, 14), duration_minutes=60).status_code == 201  # 14:00-15:00
    for starts_at, minutes in ((future(3, 13, 45), 30), (future(3, 14, 30), 10), (future(3, 14, 59), 30)):
        refused = book(clinic, bia, doctor, starts_at, duration_minutes=minutes)
        assert status_and_detail(refused) == (409, f"{SLOT_TAKEN}: {future(3, 14)} to {future(3, 15)}"), starts_at
    assert book(clinic, bia, doctor, future(3, 13, 30), duration_minutes=30).status_code == 201, (
        "ending when the other starts is fine"
    )
    assert book(clinic, bia, doctor, future(3, 15)).status_code == 201, "starting when the other ends is fine"
    assert book(clinic, bia, other_doctor, future(3, 14)).status_code == 201, "another doctor is free"


def test_of_concurrent_overlapping_bookings_over_http_exactly_one_is_taken(postgres, clinic_aws):
    with served_clinic(postgres, clinic_aws) as clinic:
        doctor = clinic.user("doctor")
        patients = [clinic.user("patient") for _ in range(8)]
        # Eight different free slots, 10:00 to 10:35, each booked for an hour: every pair overlaps, no two share a
        # start, and each is free when its request looks: only the database's constraint can refuse seven.
        responses = at_once(
            lambda i=i, p=p: book(clinic, p, doctor, future(4, 10, 5 * i), duration_minutes=60)
            for i, p in enumerate(patients)
        )
        assert sorted(r.status_code for r in responses) == [201] + [409] * 7, [r.text for r in responses]
        assert len(clinic.client.get("/appointments", headers=clinic.user("staff")["headers"]).json()) == 1


def test_a_cancelled_slot_can_be_booked_again(clinic):
    doctor, patient = clinic.user("doctor"), clinic.user("patient")
    first = book(clinic, patient, doctor, future(5, 9)).json()
    assert clinic.client.post(f"/appointments/{first['id']}/cancel", headers=patient["headers"]).status_code == 200
    assert book(clinic, patient, doctor, future(5, 9, 15)).status_code == 201


def test_a_patient_holds_a_bounded_number_of_upcoming_appointments(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws, appointments={"max_future_per_patient": 2}) as clinic:
        patient = clinic.user("patient")
        doctors = [clinic.user("doctor") for _ in range(3)]
        first, _second = (book(clinic, patient, d, future(6, 9)).json() for d in doctors[:2])
        refused = book(clinic, patient, doctors[2], future(6, 9))
        assert status_and_detail(refused) == (409, TOO_MANY_UPCOMING.format(limit=2))
        clinic.client.post(f"/appointments/{first['id']}/cancel", headers=patient["headers"])
        assert book(clinic, patient, doctors[2], future(6, 9)).status_code == 201, "a cancelled one frees a place"


def test_a_patients_concurrent_bookings_over_http_cannot_exceed_the_bound(postgres, clinic_aws):
    with served_clinic(postgres, clinic_aws, appointments={"max_future_per_patient": 2}) as clinic:
        patient = clinic.user("patient")
        doctors = [clinic.user("doctor") for _ in range(4)]
        responses = at_once(lambda d=d: book(clinic, patient, d, future(7, 9)) for d in doctors)
        assert sorted(r.status_code for r in responses) == [201, 201, 409, 409], "counted one after the other"


def test_video_appointments_get_unique_unguessable_room_links(clinic):
    doctor, patient = clinic.user("doctor"), clinic.user("patient")
    rooms = [book(clinic, patient, doctor, future(8, hour), kind="video").json()["room_url"] for hour in (10, 11, 12)]
    assert len(set(rooms)) == 3
    assert all(len(room.rsplit("/", 1)[1]) >= 43 for room in rooms), "at least 256 bits of randomness"
    assert book(clinic, patient, doctor, future(8, 13)).json()["room_url"] is None


def test_patients_see_and_cancel_only_their_appointments(clinic):
    doctor, ana, bia = clinic.user("doctor"), clinic.user("patient"), clinic.user("patient")
    booked = book(clinic, ana, doctor, future(9, 10)).json()
    assert clinic.client.get("/appointments", headers=bia["headers"]).json() == []
    assert len(clinic.client.get("/appointments", headers=doctor["headers"]).json()) == 1
    refused = clinic.client.post(f"/appointments/{booked['id']}/cancel", headers=bia["headers"])
    assert status_and_detail(refused) == (404, "appointment not found")
    assert clinic.client.get("/appointments", headers=ana["headers"]).json()[0]["status"] == booked["status"]
    cancelled = clinic.client.post(f"/appointments/{booked['id']}/cancel", headers=ana["headers"])
    assert cancelled.json()["status"] == "cancelled", "the same request from the appointment's patient succeeds"


@pytest.mark.parametrize(
    ("starts_at", "problem"),
    [
        ("2020-01-01T10:00:00Z", "is in the past"),
        ("2099-01-01T10:00:00Z", "is more than 365 days ahead"),
        ("9999-12-31T23:00:00-05:00", "outside the instants that can be stored"),  # year 10000 in UTC
        ("0001-01-01T00:00:00+05:00", "outside the instants that can be stored"),  # year 0 in UTC
        ("2026-12-01T10:00:00", "needs a time zone"),
    ],
)
def test_an_instant_in_the_past_too_far_ahead_or_beyond_what_can_be_stored_is_refused(clinic, starts_at, problem):
    doctor, patient = clinic.user("doctor"), clinic.user("patient")
    refused = book(clinic, patient, doctor, starts_at)
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["errors"]
    assert error["field"] == "starts_at" and problem in error["problem"]


def test_any_offset_is_accepted_and_every_response_answers_in_utc(clinic):
    doctor, patient = clinic.user("doctor"), clinic.user("patient")
    engine = clinic.app.state.engine
    with engine.begin() as db:  # the database hands instants back in its session's zone: here not UTC
        db.execute(text(f"ALTER DATABASE \"{engine.url.database}\" SET TimeZone = 'America/Sao_Paulo'"))
    engine.dispose()
    in_sao_paulo = future(10, 11).replace("T11:00:00Z", "T08:00:00-03:00")
    booked = book(clinic, patient, doctor, in_sao_paulo, duration_minutes=30).json()
    assert (booked["starts_at"], booked["ends_at"]) == (future(10, 11), future(10, 11, 30))
    [listed] = clinic.client.get("/appointments", headers=patient["headers"]).json()
    assert (listed["starts_at"], listed["ends_at"]) == (future(10, 11), future(10, 11, 30))
