"""The appointment pages without a browser: what each page shows and refuses, that they share the API's rules, its
events and its access log, and the htmx partials. The journeys in a real browser are in
tests/apps/browser/test_appointments.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from api_support import csrf_of, running_clinic
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clinic_api.models import Appointment, AuditLog, DoctorProfile, OutboxEvent

JITSI = "https://meet.clinic.example.org"


@pytest.fixture(scope="module")
def portal(postgres, shared_clinic_aws):
    overrides = {
        "web": {"secure_cookies": False},
        "telemedicine_base_url": JITSI,
        "telemedicine": {"jwt_secret": "a-test-jitsi-secret-0123456789abcdef"},
    }
    with running_clinic(postgres, shared_clinic_aws, **overrides) as clinic:
        yield clinic


def doctor_of(portal, specialty: str) -> dict:
    """A doctor who sees patients all day, every day, in 5-minute slots of either kind."""
    doctor = portal.user("doctor", name=f"dr {specialty.lower()}")
    with Session(portal.app.state.engine) as db:
        db.add(DoctorProfile(user_id=doctor["id"], specialty=specialty, crm_number=str(doctor["id"]), crm_state="SP"))
        db.commit()
    return doctor


def free_start(portal, doctor: dict, days: int = 3) -> tuple[str, str]:
    """A free slot `days` ahead (past any cutoff): its clinic day and its start as the form sends it."""
    day = (datetime.now(UTC).astimezone(portal.app.state.settings.agenda.zone) + timedelta(days=days)).date()
    slot = portal.slots(doctor, first=day, days=1)[40]
    return day.isoformat(), datetime.fromisoformat(slot["starts_at"]).isoformat()


def book_through_the_page(portal, client: TestClient, doctor: dict, days: int = 3, kind: str = "") -> int:
    day, starts_at = free_start(portal, doctor, days)
    page = client.get("/portal/appointments/book", params={"doctor": doctor["id"], "day": day})
    assert page.status_code == 200 and f'value="{starts_at}"' in page.text
    form = {"csrf_token": csrf_of(page.text), "doctor_id": doctor["id"], "starts_at": starts_at, "day": day}
    booked = client.post("/portal/appointments/book", data={**form, "kind": kind}, follow_redirects=False)
    assert (booked.status_code, booked.headers["location"]) == (303, "/portal/appointments")
    with Session(portal.app.state.engine) as db:
        return db.scalars(select(Appointment.id).order_by(Appointment.id.desc())).first() or 0


def test_a_patient_books_on_the_page_and_the_api_records_the_same_event(portal):
    doctor, patient = doctor_of(portal, "Cardiology"), portal.user("patient")
    client = portal.visitor(patient)
    appointment_id = book_through_the_page(portal, client, doctor)
    listed = client.get("/portal/appointments")
    assert f'href="/portal/appointments/{appointment_id}"' in listed.text
    with Session(portal.app.state.engine) as db:
        starts_at = db.get_one(Appointment, appointment_id).starts_at.astimezone(portal.app.state.settings.agenda.zone)
    assert f"{starts_at:%-d} de " in listed.text and f"às {starts_at:%H:%M}" in listed.text  # pt_BR, the clinic's clock
    client.cookies.set("lang", "en")
    in_english = client.get("/portal/appointments")
    assert "Upcoming" in in_english.text and f"{starts_at:%B %-d, %Y} at " in in_english.text
    with Session(portal.app.state.engine) as db:
        event = db.scalars(select(OutboxEvent).order_by(OutboxEvent.id.desc())).first()
    assert (event.event_type, event.payload["appointment_id"]) == ("appointment.confirmed", appointment_id)


def test_filters_leave_the_doctors_of_a_specialty_and_kind_and_htmx_gets_only_the_part_it_swaps(portal):
    cardio, derma = doctor_of(portal, "Cardiology"), doctor_of(portal, "Dermatology")
    staff = portal.user("staff")
    in_person_only = [
        {"weekday": d, "starts": "08:00", "ends": "12:00", "slot_minutes": 30, "kind": "in_person"} for d in range(7)
    ]
    assert portal.client.put(
        f"/doctors/{derma['id']}/schedule", headers=staff["headers"], json={"blocks": in_person_only}
    ).is_success
    client = portal.visitor(portal.user("patient"))
    page = client.get("/portal/appointments/book", params={"specialty": "Dermatology", "kind": "", "doctor": ""})
    assert f'<option value="{derma["id"]}" selected' in page.text  # the one doctor left is chosen
    assert f'value="{cardio["id"]}"' not in page.text
    by_video = client.get(
        "/portal/appointments/book",
        params={"specialty": "Dermatology", "kind": "video"},
        headers={"HX-Request": "true"},
    )
    assert by_video.text.lstrip().startswith('<div id="booking-results"') and "<html" not in by_video.text
    assert 'id="doctor-choice" hx-swap-oob="true"' in by_video.text  # the kind changed: the doctors listed anew
    assert f'value="{derma["id"]}"' not in by_video.text  # no video in this doctor's week
    assert by_video.headers["vary"] == "HX-Request"
    same_filters = {"specialty": "Dermatology", "kind": "", "doctor": derma["id"], "listed_for": "Dermatology|"}
    other_day = client.get("/portal/appointments/book", params=same_filters, headers={"HX-Request": "true"})
    assert "doctor-choice" not in other_day.text  # the doctor list (and the focus on it) stays


def test_a_slot_taken_meanwhile_is_a_message_next_to_the_slots_and_a_fresh_list(portal):
    doctor, patient, other = doctor_of(portal, "Neurology"), portal.user("patient"), portal.user("patient")
    client = portal.visitor(patient)
    day, starts_at = free_start(portal, doctor)
    page = client.get("/portal/appointments/book", params={"doctor": doctor["id"], "day": day})
    taken = portal.client.post(
        "/appointments", headers=other["headers"], json={"doctor_id": doctor["id"], "starts_at": starts_at}
    )
    assert taken.status_code == 201
    form = {"csrf_token": csrf_of(page.text), "doctor_id": doctor["id"], "starts_at": starts_at, "day": day}
    refused = client.post("/portal/appointments/book", data=form)
    assert refused.status_code == 409
    assert 'id="starts_at-error" role="alert">Este horário não está mais livre' in refused.text
    assert f'value="{starts_at}"' not in refused.text  # the list is fresh: the taken time is gone


def test_another_patients_appointment_is_the_404_page_and_a_doctors_reads_are_in_the_access_log(portal):
    doctor, patient = doctor_of(portal, "Pediatrics"), portal.user("patient")
    appointment_id = book_through_the_page(portal, portal.visitor(patient), doctor)
    stranger = portal.visitor(portal.user("patient"))
    for path in (f"/portal/appointments/{appointment_id}", f"/portal/appointments/{appointment_id}/cancel"):
        page = stranger.get(path)
        assert page.status_code == 404 and "Página não encontrada" in page.text, path
    doctor_client = portal.visitor(doctor)
    assert doctor_client.get(f"/portal/appointments/{appointment_id}").status_code == 200
    day = (datetime.now(UTC) + timedelta(days=3)).astimezone(portal.app.state.settings.agenda.zone).date()
    same_week = day - timedelta(days=1) if day.weekday() else day + timedelta(days=1)
    week = doctor_client.get("/portal/agenda", params={"view": "week", "day": same_week.isoformat()})
    assert f'href="/portal/appointments/{appointment_id}"' in week.text
    assert f'href="/portal/patients/{patient["id"]}"' in week.text
    other_day = doctor_client.get("/portal/agenda", params={"day": same_week.isoformat()})
    assert f'href="/portal/appointments/{appointment_id}"' not in other_day.text
    with Session(portal.app.state.engine) as db:
        actions = db.scalars(
            select(AuditLog.action).where(AuditLog.subject_id == patient["id"], AuditLog.user_id == doctor["id"])
        ).all()
    assert sorted(actions) == ["appointments.list", "appointments.read"]


def test_a_doctor_cancels_only_with_a_reason_which_the_patients_email_carries(portal):
    doctor, patient = doctor_of(portal, "Urology"), portal.user("patient")
    appointment_id = book_through_the_page(portal, portal.visitor(patient), doctor)
    client = portal.visitor(doctor)
    page = client.get(f"/portal/appointments/{appointment_id}/cancel")
    refused = client.post(f"/portal/appointments/{appointment_id}/cancel", data={"csrf_token": csrf_of(page.text)})
    assert refused.status_code == 422 and 'id="reason-error"' in refused.text
    done = client.post(
        f"/portal/appointments/{appointment_id}/cancel",
        data={"csrf_token": csrf_of(page.text), "reason": "The doctor is ill"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    with Session(portal.app.state.engine) as db:
        event = db.scalars(select(OutboxEvent).order_by(OutboxEvent.id.desc())).first()
    assert (event.event_type, event.payload["reason"]) == ("appointment.cancelled", "The doctor is ill")


def test_the_video_button_shows_only_while_the_room_is_open_and_leads_into_it(portal):
    doctor, patient = doctor_of(portal, "Psychiatry"), portal.user("patient")
    client = portal.visitor(patient)
    appointment_id = book_through_the_page(portal, client, doctor, kind="video")
    closed = client.get(f"/portal/appointments/{appointment_id}")
    assert "Entrar na consulta por vídeo" not in closed.text and "A sala de vídeo abre às" in closed.text
    now = datetime.now(UTC)
    with Session(portal.app.state.engine) as db:  # the visit started five minutes ago
        db.execute(
            update(Appointment)
            .where(Appointment.id == appointment_id)
            .values(starts_at=now - timedelta(minutes=5), ends_at=now + timedelta(minutes=25))
        )
        db.commit()
    for who, button in ((client, "Entrar na consulta por vídeo"), (portal.visitor(doctor), "Iniciar consulta")):
        page = who.get(f"/portal/appointments/{appointment_id}")
        assert button in page.text
        joined = who.post(
            f"/portal/appointments/{appointment_id}/video",
            data={"csrf_token": csrf_of(page.text)},
            follow_redirects=False,
        )
        assert joined.status_code == 303 and joined.headers["location"].startswith(f"{JITSI}/")
        assert "?jwt=" in joined.headers["location"]
    # Past the patient's cutoff: no reschedule or cancel online, and the page says whom to call.
    late = client.get(f"/portal/appointments/{appointment_id}")
    assert "Remarcar" not in late.text and "ligue para a clínica" in late.text
