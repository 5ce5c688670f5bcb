"""Exams in a real browser: a doctor orders an exam for their patient, uploads the result, the file processor
verifies it, the doctor releases it and the patient downloads the very same bytes; a wrong file is refused next to
the field; another patient's exam is the 404 page. axe-core runs on every exam page."""

from __future__ import annotations

import os
import re

import httpx
import pytest
from api_support import future
from file_support import make_processor, pdf_bytes
from playwright.sync_api import expect
from sqlalchemy.orm import Session
from support import wait_for

from clinic_api.models import Exam

PDF = pdf_bytes(pages=2)
SCREENSHOTS = os.environ.get("EXAMS_SCREENSHOTS")  # a folder: the pages as the journey sees them


@pytest.fixture
def doctor_and_patient(clinic, make_account):
    """A doctor and a patient with an appointment booked with them (through the API)."""
    doctor, patient = make_account("doctor", name="Ana Lima"), make_account("patient", name="Bia Souza")
    booked = clinic.api.client.post(
        "/appointments", headers=patient.headers, json={"doctor_id": doctor.id, "starts_at": future(3)}
    )
    assert booked.status_code == 201, booked.text
    return doctor, patient


def verify_upload(clinic, exam_id: int) -> None:
    """The file processor's handling of the file queue until the exam's upload has its verdict (the server's outbox
    relay puts the event there within a fraction of a second; the queue is shared with other tests' clinics)."""
    processor = make_processor(clinic.api.app.state.engine, clinic.aws, wait_seconds=1)

    def checked() -> bool:
        for message in processor.receive():
            processor.process(message)
        with Session(clinic.api.app.state.engine) as session:
            return session.get_one(Exam, exam_id).status != "uploaded"

    wait_for(checked, 20, f"the file processor's verdict on exam {exam_id}")


def test_a_doctor_orders_uploads_and_releases_a_result_the_patient_downloads(
    page, browser, clinic, doctor_and_patient, sign_in, check_accessibility, sent_emails, tmp_path
):
    doctor, patient = doctor_and_patient
    sign_in(page, doctor)
    page.goto(f"/portal/patients/{patient.id}")
    expect(page.get_by_role("heading", name="Bia Souza", level=1)).to_be_visible()
    check_accessibility(page)

    page.get_by_role("link", name="Solicitar exame").click()
    expect(page.get_by_role("heading", name="Solicitar exame")).to_be_visible()
    page.get_by_role("button", name="Solicitar o exame").click()  # nothing typed
    expect(page.get_by_label("Exame")).to_have_attribute("aria-invalid", "true")
    check_accessibility(page)
    page.get_by_label("Exame").fill("Hemograma completo")
    page.get_by_role("button", name="Solicitar o exame").click()
    expect(page.get_by_role("heading", name="Hemograma completo", level=1)).to_be_visible()
    expect(page.get_by_role("status").first).to_contain_text("Exame solicitado")

    not_a_pdf = tmp_path / "laudo.txt"
    not_a_pdf.write_text("not a PDF")
    page.get_by_label("Arquivo do resultado (PDF)").set_input_files(not_a_pdf)
    page.get_by_role("button", name="Enviar", exact=True).click()
    expect(page.get_by_text("O resultado deve ser um arquivo PDF")).to_be_visible()
    expect(page.get_by_label("Arquivo do resultado (PDF)")).to_have_attribute("aria-invalid", "true")
    check_accessibility(page)

    result = tmp_path / "hemograma.pdf"
    result.write_bytes(PDF)
    page.get_by_label("Arquivo do resultado (PDF)").set_input_files(result)
    page.get_by_role("button", name="Enviar", exact=True).click()
    expect(page.get_by_text("Resultado enviado, em verificação")).to_be_visible()
    expect(page.get_by_role("button", name="Liberar o resultado ao paciente")).to_have_count(0)
    check_accessibility(page)

    verify_upload(clinic, int(page.url.rsplit("/", 1)[1]))
    # htmx asks for the status again every 2 s: the page changes by itself.
    release = page.get_by_role("button", name="Liberar o resultado ao paciente")
    expect(release).to_be_visible()
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/doctor-exam.png", full_page=True)
    expect(page.get_by_text("Resultado verificado, pronto para liberar")).to_be_visible()
    release.click()
    expect(page.get_by_text("Resultado liberado ao paciente")).to_be_visible()
    page.get_by_role("navigation", name="Principal").get_by_role("link", name="Exames").click()
    expect(page.get_by_role("row", name=re.compile("Hemograma completo Bia Souza"))).to_be_visible()
    check_accessibility(page)
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/doctor-exams.png", full_page=True)

    patient_page = browser.new_context(base_url=clinic.base_url, locale="pt-BR").new_page()
    sign_in(patient_page, patient)
    patient_page.goto("/portal/exams")
    expect(patient_page.get_by_role("cell", name="Resultado pronto")).to_be_visible()
    check_accessibility(patient_page)
    patient_page.get_by_role("link", name="Hemograma completo").click()
    check_accessibility(patient_page)
    download = patient_page.get_by_role("link", name="Baixar o resultado (PDF)")
    if SCREENSHOTS:
        patient_page.screenshot(path=f"{SCREENSHOTS}/patient-exam.png", full_page=True)
    # The link answers 303 to a presigned URL of moto's S3: follow it as the browser would, outside the browser.
    answer = patient_page.request.get(download.get_attribute("href"), max_redirects=0)
    assert answer.status == 303
    assert httpx.get(answer.headers["location"]).content == PDF, "the very bytes the doctor uploaded"
    patient_page.context.close()

    # Ordered, completed, result ready: the notifier sends them as the relay delivers the events.
    def exam_emails() -> list[str]:
        return sorted(m["subject"] for m in sent_emails(to=patient.email) if "exame" in m["subject"])

    wait_for(lambda: len(exam_emails()) >= 3, 20, "the patient's three exam emails")
    subjects = exam_emails()
    assert subjects == [
        "O resultado do seu exame Hemograma completo está pronto",
        "Seu exame Hemograma completo foi agendado",
        "Seu exame Hemograma completo foi concluído",
    ]


def test_a_patient_opening_another_patients_exam_gets_the_404_page(
    page, clinic, doctor_and_patient, make_account, sign_in, check_accessibility
):
    doctor, patient = doctor_and_patient
    ordered = clinic.api.client.post(
        "/exams", headers=doctor.headers, json={"patient_id": patient.id, "exam_type": "Glicemia"}
    )
    assert ordered.status_code == 201, ordered.text
    someone_else = make_account("patient")
    sign_in(page, someone_else)
    page.goto("/portal/exams")
    expect(page.get_by_text(re.compile("Você ainda não tem exames"))).to_be_visible()
    check_accessibility(page)
    answer = page.goto(f"/portal/exams/{ordered.json()['id']}")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("heading", name="Página não encontrada")).to_be_visible()
    expect(page.get_by_text("Glicemia")).to_have_count(0)
