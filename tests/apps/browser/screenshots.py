"""Screenshots of the portal's main pages for the README (not a test: pytest collects only test_*.py on its own).

    .venv/bin/python -m pytest tests/apps/browser/screenshots.py -p no:cacheprovider --basetemp=/tmp/screenshots

Uses the browser fixtures (conftest.py beside it): the clinic with an account of each role, an appointment and an
exam; then saves a PNG of every page of PAGES that exists (answers 200) in docs/screenshots/, and prints the Markdown
that links them. Pages of features not built yet are skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
OUT = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
# (file name, who, path, caption); {appointment}, {exam}, {patient}, {day} are filled in.
PAGES = [
    ("sign-in", None, "/portal/sign-in", "Sign-in (pt-BR, the default)"),
    ("register", None, "/portal/register", "Registering as a patient, with consent"),
    ("forgot-password", None, "/portal/forgot-password", "A forgotten password"),
    ("patient-appointments", "patient", "/portal/appointments", "Patient: appointments"),
    ("patient-book", "patient", "/portal/appointments/book?day={day}", "Patient: book from a doctor's free slots"),
    ("patient-appointment", "patient", "/portal/appointments/{appointment}", "Patient: an appointment"),
    ("patient-exams", "patient", "/portal/exams", "Patient: exam results"),
    ("patient-exam", "patient", "/portal/exams/{exam}", "Patient: an exam"),
    ("patient-profile", "patient", "/portal/profile", "Patient: profile"),
    ("patient-privacy", "patient", "/portal/privacy", "Patient: privacy (consents, access log, export, deletion)"),
    ("doctor-agenda", "doctor", "/portal/agenda?view=week", "Doctor: the week's agenda"),
    ("doctor-patient", "doctor", "/portal/patients/{patient}", "Doctor: a patient's appointments and exams"),
    ("staff-doctors", "staff", "/portal/staff/doctors", "Staff: doctors and schedules"),
    ("staff-accounts", "staff", "/portal/staff/accounts", "Staff: accounts"),
    ("staff-audit", "admin", "/portal/staff/audit", "Admin: the audit log"),
]


def test_screenshots(browser, clinic, make_account, sign_in):
    OUT.mkdir(parents=True, exist_ok=True)
    accounts = {
        "patient": make_account("patient", name="maria souza"),
        "doctor": make_account("doctor", name="dra. ana lima", open_all_day=False),
        "staff": make_account("staff", name="carla recepção"),
        "admin": make_account("admin", name="bruno admin"),
    }
    api = clinic.api.client
    day = (datetime.now(UTC) + timedelta(days=2)).date()
    doctor, patient = accounts["doctor"], accounts["patient"]
    # A clinic's week (api_support.Clinic.open_agenda): mornings in person, afternoons by video, 30-minute slots.
    clinic.api.open_agenda({"id": doctor.id, "headers": doctor.headers})
    slots = api.get(f"/doctors/{doctor.id}/slots?from={day}&to={day}", headers=patient.headers).json()["slots"]
    video = next(s for s in slots if s["kind"] == "video")
    appointment = api.post(
        "/appointments",
        json={"doctor_id": doctor.id, "starts_at": video["starts_at"], "kind": "video"},
        headers=patient.headers,
    ).json()
    order = {"patient_id": patient.id, "exam_type": "Hemograma completo", "doctor_id": doctor.id}
    ordered = api.post("/exams", json=order, headers=doctor.headers)  # who may order has changed over time
    if ordered.status_code != 201:
        ordered = api.post("/exams", json=order, headers=accounts["staff"].headers)
    assert ordered.status_code == 201, ordered.text
    exam = ordered.json()
    values = {"appointment": appointment["id"], "exam": exam["id"], "patient": patient.id, "day": day.isoformat()}
    taken = []
    pages = {}
    try:
        for name, who, path, caption in PAGES:
            if who not in pages:
                context = browser.new_context(base_url=clinic.base_url, locale="pt-BR", viewport=VIEWPORT)
                pages[who] = context.new_page()
                if who:
                    sign_in(pages[who], accounts[who])
            page = pages[who]
            response = page.goto(path.format(**values))
            if response is None or response.status != 200:
                continue
            page.screenshot(path=OUT / f"{name}.png", full_page=True)
            taken.append((name, caption))
    finally:
        for page in pages.values():
            page.context.close()
    print("\n" + "\n".join(f"![{caption}](docs/screenshots/{name}.png)" for name, caption in taken))
