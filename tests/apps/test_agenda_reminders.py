"""Reminders 24 h before each appointment, sent once however many replicas run the loop."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from api_support import running_clinic
from sqlalchemy import select
from sqlalchemy.orm import Session
from support import sent_emails, wait_for

from clinic_api.agendas.reminders import Reminders, remind_due
from clinic_api.models import OutboxEvent

# Every day, all day: the next slots start within the hour, others days ahead.
ALL_DAY = [{"weekday": d, "starts": "00:00", "ends": "23:30", "slot_minutes": 30, "kind": "video"} for d in range(7)]


@pytest.fixture
def clinic(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        yield clinic


def reminders(clinic) -> list[dict]:
    with Session(clinic.app.state.engine) as session:
        query = select(OutboxEvent).where(OutboxEvent.event_type == "appointment.reminder").order_by(OutboxEvent.id)
        return [e.payload for e in session.scalars(query)]


def book_soon_and_later(clinic, soon: int):
    """`soon` appointments starting within the next hours and one two days ahead, each with its own patient."""
    doctor = clinic.user("doctor")
    clinic.open_agenda(doctor, ALL_DAY)
    today = datetime.now(UTC).astimezone(clinic.app.state.settings.agenda.zone).date()
    slots = clinic.slots(doctor, first=today, days=4)
    later = next(s for s in slots if datetime.fromisoformat(s["starts_at"]) > datetime.now(UTC) + timedelta(days=2))
    booked = []
    for slot in [*slots[:soon], later]:
        patient = clinic.user("patient")
        response = clinic.client.post(
            "/appointments",
            headers=patient["headers"],
            json={"doctor_id": doctor["id"], "starts_at": slot["starts_at"]},
        )
        assert response.status_code == 201, response.text
        booked.append({**response.json(), "email": patient["email"], "headers": patient["headers"]})
    return booked[:-1], booked[-1]


def test_two_schedulers_at_once_write_one_reminder_per_due_appointment(clinic):
    due, later = book_soon_and_later(clinic, soon=5)
    agenda = clinic.app.state.settings.agenda
    # The worst interleaving, made certain: the second pass runs while the first holds its claim uncommitted.
    first_claimed, second_done, claimed = threading.Event(), threading.Event(), {}

    class HeldOpen(Session):
        def commit(self) -> None:
            first_claimed.set()
            second_done.wait(5)
            super().commit()

    def first():
        with HeldOpen(clinic.app.state.engine) as session:
            claimed["first"] = remind_due(session, agenda)

    def second():
        first_claimed.wait(10)
        with Session(clinic.app.state.engine) as session:
            claimed["second"] = remind_due(session, agenda)
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert claimed["second"] == [], "the second pass skips what the first holds"
    assert sorted(claimed["first"] + claimed["second"]) == sorted(a["id"] for a in due), (
        "each due appointment claimed once"
    )
    assert sorted(r["appointment_id"] for r in reminders(clinic)) == sorted(a["id"] for a in due)
    with Session(clinic.app.state.engine) as session:
        assert remind_due(session, agenda) == [], "a later pass finds nothing left to send"
    assert later["id"] not in [r["appointment_id"] for r in reminders(clinic)], "two days ahead: not yet"
    link = reminders(clinic)[0]["telemedicine_url"]
    assert link and link == due[0]["room_url"], "a video visit's reminder links its room"


def test_a_rescheduled_appointment_is_reminded_again_and_a_cancelled_one_not_at_all(clinic):
    (first, second), later = book_soon_and_later(clinic, soon=2)
    agenda = clinic.app.state.settings.agenda
    staff = clinic.user("staff")
    cancelled = clinic.client.post(
        f"/appointments/{second['id']}/cancel", headers=staff["headers"], json={"reason": "Doctor is ill"}
    )
    assert cancelled.status_code == 200
    with Session(clinic.app.state.engine) as session:
        assert remind_due(session, agenda) == [first["id"]]
    # Moved to a slot later today: the reminder sent was for the old time, so a new one goes out.
    moved = clinic.client.post(
        f"/appointments/{first['id']}/reschedule", headers=staff["headers"], json={"starts_at": second["starts_at"]}
    )
    assert moved.status_code == 200, moved.text
    with Session(clinic.app.state.engine) as session:
        assert remind_due(session, agenda) == [first["id"]]
    assert [r["starts_at"] for r in reminders(clinic)] == [
        first["starts_at"].replace("Z", "+00:00"),
        second["starts_at"].replace("Z", "+00:00"),
    ]
    assert later["id"] not in [r["appointment_id"] for r in reminders(clinic)]


def test_two_replicas_running_the_loop_send_each_patient_one_reminder_email(postgres, clinic_aws, notifier):
    settings = {
        "outbox": {"relay_enabled": True, "interval_seconds": 0.2},
        "agenda": {"reminders_enabled": True, "reminder_interval_seconds": 0.1},
    }
    with running_clinic(postgres, clinic_aws, **settings) as clinic:
        # The app's own loop is one replica; a second one runs beside it on another engine's connections.
        second = Reminders(clinic.app.state.engine, clinic.app.state.settings.agenda)
        second.start()
        try:
            due, later = book_soon_and_later(clinic, soon=3)

            def reminder_emails(appointment) -> list:
                return [m for m in sent_emails(clinic_aws.endpoint, appointment["email"]) if "Lembrete" in str(m)]

            wait_for(lambda: all(reminder_emails(a) for a in due), 30, "a reminder email to every due patient")
            time.sleep(2)  # twenty more passes of each loop: nothing more may go out
            assert [len(reminder_emails(a)) for a in due] == [1, 1, 1]
            assert reminder_emails(later) == []
            assert len(reminders(clinic)) == 3
        finally:
            second.stop()
