"""Appointments in a real browser: a patient books a free slot, the doctor finds it in the agenda, the patient
reschedules and cancels; a slot taken meanwhile; another patient's appointment. axe-core on every page on the way."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from api_support import PASSWORD
from playwright.sync_api import expect
from sqlalchemy.orm import Session

from clinic_api.models import DoctorProfile

ALL_DAY = [{"weekday": d, "starts": "00:00", "ends": "00:00", "slot_minutes": 30, "kind": "any"} for d in range(7)]


@dataclass(frozen=True)
class Person:
    id: int
    name: str
    email: str
    headers: dict
    password: str = PASSWORD


@dataclass(frozen=True)
class Cast:
    doctor: Person
    specialty: str
    patient: Person
    other_patient: Person


@pytest.fixture(scope="module")
def cast(clinic) -> Cast:
    """One doctor of a specialty of their own (so the filter leaves only them), seeing patients all day in 30-minute
    slots of either kind, and two patients: shared by the module's journeys."""
    tag = uuid.uuid4().hex[:4]
    people = {}
    for role, name in (("doctor", f"ana lima {tag}"), ("patient", f"pedro souza {tag}"), ("patient", f"rita {tag}")):
        made = clinic.api.user(role, name=name, open_all_day=False)
        people[name] = Person(made["id"], name.title(), made["email"], made["headers"])
    doctor, patient, other = people.values()
    specialty = f"Cardiologia {tag}"
    with Session(clinic.api.app.state.engine) as db:
        db.add(DoctorProfile(user_id=doctor.id, specialty=specialty, crm_number=str(doctor.id), crm_state="SP"))
        db.commit()
    schedule = clinic.api.client.put(f"/doctors/{doctor.id}/schedule", headers=doctor.headers, json={"blocks": ALL_DAY})
    assert schedule.status_code == 200, schedule.text
    return Cast(doctor, specialty, patient, other)


def clinic_day(clinic, days_ahead: int) -> date:
    zone = clinic.api.app.state.settings.agenda.zone
    return (datetime.now(UTC).astimezone(zone) + timedelta(days=days_ahead)).date()


def test_a_patient_books_the_doctor_sees_it_and_the_patient_reschedules_then_cancels(
    page, browser, clinic, cast, sign_in, check_accessibility
):
    day = clinic_day(clinic, 3)  # past the patient's 24-hour cutoff, so the patient may still change it
    sign_in(page, cast.patient)
    expect(page.get_by_role("heading", name="Minhas consultas", level=1)).to_be_visible()
    check_accessibility(page)

    page.get_by_role("navigation", name="Principal").get_by_role("link", name="Agendar consulta").click()
    page.get_by_label("Especialidade").select_option(label=cast.specialty)
    # htmx swaps the rest of the form in: the one doctor of that specialty is chosen, their free times listed.
    expect(page.get_by_label("Médico(a)")).to_have_value(str(cast.doctor.id))
    page.get_by_label("Tipo de consulta").select_option(label="Presencial")
    expect(page).to_have_url(re.compile(r"kind=in_person"))  # swapped in (and in the address bar)
    page.get_by_label("Dia", exact=True).fill(day.isoformat())
    expect(page).to_have_url(re.compile(f"day={day.isoformat()}"))
    slots = page.get_by_role("group", name=re.compile(r"^Horários livres em "))
    check_accessibility(page)
    slots.get_by_label("10:00").check()
    page.get_by_role("button", name="Agendar", exact=True).click()

    expect(page).to_have_url(re.compile(r"/portal/appointments$"))
    expect(page.get_by_role("status")).to_contain_text("Consulta agendada:")
    upcoming = page.get_by_role("region", name="Próximas")
    expect(upcoming.get_by_role("link", name=re.compile(r"às 10:00$"))).to_be_visible()
    expect(upcoming).to_contain_text(cast.doctor.name)

    # The doctor, in a browser of their own, finds it in the week's agenda, with a link to the patient.
    doctor_context = browser.new_context(base_url=clinic.base_url, locale="pt-BR", timezone_id="America/Sao_Paulo")
    try:
        doctor_page = doctor_context.new_page()
        sign_in(doctor_page, cast.doctor)
        expect(doctor_page.get_by_role("heading", name=re.compile(r"^Agenda: "), level=1)).to_be_visible()
        check_accessibility(doctor_page)
        doctor_page.goto(f"/portal/agenda?view=week&day={day.isoformat()}")
        row = doctor_page.get_by_role("row", name=re.compile(cast.patient.name))
        expect(row.get_by_role("link", name=cast.patient.name)).to_have_attribute(
            "href", f"/portal/patients/{cast.patient.id}"
        )
        check_accessibility(doctor_page)
        row.get_by_role("link", name="10:00–10:30").click()
        expect(doctor_page.get_by_role("link", name=cast.patient.name)).to_be_visible()
        expect(doctor_page.get_by_role("heading", level=1)).to_contain_text("às 10:00")
        check_accessibility(doctor_page)
    finally:
        doctor_context.close()

    # The patient moves it to the next day at 11:00, then cancels it.
    upcoming.get_by_role("link", name=re.compile(r"às 10:00$")).click()
    check_accessibility(page)
    moved_to = day + timedelta(days=1)
    page.get_by_label("Dia", exact=True).fill(moved_to.isoformat())
    expect(page).to_have_url(re.compile(f"day={moved_to.isoformat()}"))
    page.get_by_label("11:00").check()
    page.get_by_role("button", name="Remarcar para este horário").click()
    expect(page.get_by_role("status")).to_contain_text("Consulta remarcada para")
    expect(page.get_by_role("heading", level=1)).to_contain_text("às 11:00")

    page.get_by_role("link", name="Cancelar consulta").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Cancelar a consulta de")
    check_accessibility(page)
    page.get_by_role("button", name="Sim, cancelar").click()
    expect(page).to_have_url(re.compile(r"/portal/appointments$"))
    expect(page.get_by_role("status")).to_contain_text("A consulta foi cancelada.")
    expect(page.get_by_role("region", name="Próximas")).to_contain_text("Você não tem consultas agendadas.")
    expect(page.get_by_role("region", name="Anteriores e canceladas")).to_contain_text("Cancelada")


def test_a_slot_taken_meanwhile_and_another_patients_appointment(page, clinic, cast, sign_in, check_accessibility):
    day = clinic_day(clinic, 5)
    sign_in(page, cast.patient)
    page.goto(f"/portal/appointments/book?doctor={cast.doctor.id}&day={day.isoformat()}")
    page.get_by_label("09:00").check()
    # Meanwhile, the other patient takes that very time.
    starts_at = next(
        s["starts_at"]
        for s in clinic.api.slots({"id": cast.doctor.id, "headers": cast.doctor.headers}, day, 1)
        if "T12:00:00" in s["starts_at"]  # 09:00 in São Paulo
    )
    taken = clinic.api.client.post(
        "/appointments", headers=cast.other_patient.headers, json={"doctor_id": cast.doctor.id, "starts_at": starts_at}
    )
    assert taken.status_code == 201, taken.text
    page.get_by_role("button", name="Agendar", exact=True).click()

    slots = page.get_by_role("group", name=re.compile(r"^Horários livres em "))
    expect(slots.get_by_role("alert")).to_have_text(re.compile(r"^Este horário não está mais livre"))
    expect(slots.get_by_label("09:00")).to_have_count(0)  # the list is fresh: the taken time is gone
    expect(slots.get_by_label("09:30")).to_be_visible()
    check_accessibility(page)

    # The other patient's appointment is not this patient's to see: the 404 page, as the API answers.
    page.goto(f"/portal/appointments/{taken.json()['id']}")
    expect(page.get_by_role("heading", name="Página não encontrada", level=1)).to_be_visible()
