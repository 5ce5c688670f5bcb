"""The portal's exam pages without a browser: who may open what, and the audit and access-log rows each page writes
(the same as the API's). The journeys in a real browser: tests/apps/browser/test_exams_journeys.py."""

from __future__ import annotations

import re

import httpx
import pytest
from api_support import csrf_of, future, running_clinic
from fastapi.testclient import TestClient
from file_support import check_uploads, pdf_bytes
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_api.exams import service
from clinic_api.models import AuditLog, Exam, OutboxEvent

PDF = pdf_bytes(pages=2)
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def portal(postgres, shared_clinic_aws):
    storage = {"bucket": shared_clinic_aws.bucket, "max_upload_bytes": LIMIT}
    with running_clinic(postgres, shared_clinic_aws, web={"secure_cookies": False}, storage=storage) as clinic:
        clinic.aws = shared_clinic_aws
        yield clinic


def signed_in(portal, account: dict, language: str = "en") -> TestClient:
    """A browser of its own (cookie jar), signed in as `account`, reading `language`."""
    return portal.visitor(account, follow_redirects=False, headers={"Accept-Language": language})


def post(client: TestClient, page_url: str, action: str, **kwargs) -> httpx.Response:
    """Submits a form of the page at `page_url` to `action`, with the page's CSRF token."""
    token = csrf_of(client.get(page_url).text)
    data = {**kwargs.pop("data", {}), "csrf_token": token}
    return client.post(action, data=data, **kwargs)


def rows(portal, **where) -> list[tuple]:
    with Session(portal.app.state.engine) as session:
        query = select(AuditLog).filter_by(**where).order_by(AuditLog.id)
        return [(a.user_id, a.action, a.outcome, a.subject_id) for a in session.scalars(query)]


def book(portal, patient: dict, doctor: dict) -> None:
    booked = portal.client.post(
        "/appointments", headers=patient["headers"], json={"doctor_id": doctor["id"], "starts_at": future(2)}
    )
    assert booked.status_code == 201, booked.text


def test_a_doctor_orders_uploads_and_releases_and_the_patient_downloads_with_the_apis_rows(portal):
    doctor, patient = portal.user("doctor"), portal.user("patient", "pat")
    book(portal, patient, doctor)
    dr, pat = signed_in(portal, doctor), signed_in(portal, patient)

    chart = dr.get(f"/portal/patients/{patient['id']}")
    assert chart.status_code == 200 and "Pat" in chart.text
    assert rows(portal, user_id=doctor["id"], action="appointments.list") == [
        (doctor["id"], "appointments.list", "granted", patient["id"])
    ], "the chart's read of the appointments is in the patient's access log, as the API's list writes it"

    form_url = f"/portal/exams/new?patient={patient['id']}"
    ordered = post(dr, form_url, form_url, data={"exam_type": "  Lipid panel "})
    assert ordered.status_code == 303, ordered.text
    exam_id = int(ordered.headers["location"].rsplit("/", 1)[1])
    with Session(portal.app.state.engine) as session:
        exam = session.get_one(Exam, exam_id)
        assert (exam.doctor_id, exam.exam_type, exam.status) == (doctor["id"], "Lipid panel", "requested")
        assert (
            session.scalar(select(OutboxEvent.event_type).where(OutboxEvent.payload["exam_id"].as_integer() == exam_id))
            == "exam.created"
        )

    page = f"/portal/exams/{exam_id}"
    uploaded = post(dr, page, f"{page}/result", files={"result": ("result.pdf", PDF, "application/pdf")})
    assert (uploaded.status_code, uploaded.headers["location"]) == (303, page)
    processing = dr.get(f"{page}/status")
    assert 'hx-trigger="every 2s"' in processing.text and "being checked" in processing.text
    assert "Release the result" not in processing.text, "not before the file processor has verified it"

    check_uploads(portal.app.state.engine, portal.aws)  # the queue is shared: other tests' uploads may be there too
    with Session(portal.app.state.engine) as session:
        assert session.get_one(Exam, exam_id).status == "verified"
    verified = dr.get(f"{page}/status")
    assert "hx-trigger" not in verified.text, "polling stops once the file is checked"
    released = post(dr, page, f"{page}/ready")
    assert released.status_code == 303 and "Result released" in dr.get(page).text

    assert "Result ready" in pat.get("/portal/exams").text
    download = pat.get(f"{page}/download")
    assert download.status_code == 303
    assert httpx.get(download.headers["location"]).content == PDF, "the very bytes the doctor uploaded"
    downloads = [r for r in rows(portal, exam_id=exam_id) if r[1] == "result.download"]
    assert downloads == [(patient["id"], "result.download", "granted", patient["id"])], "audited as the API's"
    assert set(rows(portal, user_id=doctor["id"], action="exam.read")) == {
        (doctor["id"], "exam.read", "granted", patient["id"])
    }, "the doctor's reads of the exam page are in the patient's access log"
    assert rows(portal, user_id=patient["id"], action="exam.read") == [], "the patient's own reads are not"


def test_a_refused_upload_shows_the_reason_next_to_the_field_in_the_users_language(portal):
    doctor, patient = portal.user("doctor"), portal.user("patient")
    book(portal, patient, doctor)
    dr = signed_in(portal, doctor, language="pt-BR")
    form_url = f"/portal/exams/new?patient={patient['id']}"
    page = post(dr, form_url, form_url, data={"exam_type": "Hemograma"}).headers["location"]

    def upload(name: str, body: bytes, content_type: str) -> httpx.Response:
        return post(dr, page, f"{page}/result", files={"result": (name, body, content_type)})

    not_pdf = upload("notes.txt", b"just text", "text/plain")
    assert not_pdf.status_code == 415
    assert 'id="result-error">O resultado deve ser um arquivo PDF' in not_pdf.text
    assert 'aria-invalid="true"' in not_pdf.text
    disguised = upload("fake.pdf", b"<html>not a pdf</html>", "application/pdf")
    assert disguised.status_code == 415, "the first bytes are checked, not only the declared type"
    too_large = upload("big.pdf", b"%PDF-" + b"0" * LIMIT, "application/pdf")
    assert too_large.status_code == 413 and "O arquivo tem mais de 0.0625 MB" in too_large.text
    far_too_large = upload("huge.pdf", b"%PDF-" + b"0" * (LIMIT + 32 * 1024), "application/pdf")
    assert far_too_large.status_code == 413 and "O arquivo é grande demais" in far_too_large.text
    nothing = post(dr, page, f"{page}/result", files={"result": ("", b"", "application/octet-stream")})
    assert nothing.status_code == 422 and "Escolha o arquivo PDF do resultado." in nothing.text
    with Session(portal.app.state.engine) as session:
        assert session.get_one(Exam, int(page.rsplit("/", 1)[1])).status == "requested", "nothing was stored"


def test_another_patients_exam_and_a_patient_not_theirs_are_the_404_page(portal):
    doctor, colleague = portal.user("doctor"), portal.user("doctor")
    ana, bia = portal.user("patient"), portal.user("patient")
    book(portal, ana, doctor)
    dr = signed_in(portal, doctor)
    form_url = f"/portal/exams/new?patient={ana['id']}"
    page = post(dr, form_url, form_url, data={"exam_type": "Glucose"}).headers["location"]
    exam_id = int(page.rsplit("/", 1)[1])

    other_patient = signed_in(portal, bia)
    for url in (page, f"{page}/status", f"{page}/download", "/portal/exams/2147483648/download"):
        refused = other_patient.get(url)
        assert (refused.status_code, "Page not found" in refused.text) == (404, True), url
    assert [r[:3] for r in rows(portal, exam_id=exam_id, action="result.download")] == [
        (bia["id"], "result.download", "denied")
    ], "the refused download is audited, as the API's is"

    other_doctor = signed_in(portal, colleague)
    assert other_doctor.get(f"/portal/patients/{ana['id']}").status_code == 404, "no appointment with her"
    assert other_doctor.get(f"/portal/exams/new?patient={ana['id']}").status_code == 404
    assert other_doctor.get(page).status_code == 404
    assert signed_in(portal, ana).get(f"/portal/patients/{ana['id']}").status_code == 403, "a doctor's page"
    staff = signed_in(portal, portal.user("staff"))
    assert staff.get("/portal/exams").status_code == 403


def test_the_exam_list_pages_newest_first_and_logs_the_doctors_read(portal, monkeypatch):
    monkeypatch.setattr(service, "PAGE_SIZE", 2)
    staff, doctor, patient = portal.user("staff"), portal.user("doctor"), portal.user("patient")
    book(portal, patient, doctor)
    for exam_type in ("First", "Second", "Third"):
        made = portal.client.post(
            "/exams", headers=staff["headers"], json={"patient_id": patient["id"], "exam_type": exam_type}
        )
        assert made.status_code == 201, made.text
    pat = signed_in(portal, patient)
    first = pat.get("/portal/exams")
    assert re.findall(r">(First|Second|Third)</a>", first.text) == ["Third", "Second"]
    older = re.search(r'href="(/portal/exams\?cursor=[^"]+)"', first.text).group(1)
    second = pat.get(older)
    assert re.findall(r">(First|Second|Third)</a>", second.text) == ["First"]
    assert "Older exams" not in second.text, "the last page links to no older one"
    assert rows(portal, user_id=patient["id"], action="exams.list") == [], "the patient's own read is not logged"
    signed_in(portal, doctor).get("/portal/exams")
    assert rows(portal, user_id=doctor["id"], action="exams.list") == [
        (doctor["id"], "exams.list", "granted", patient["id"])
    ], "one row per listed patient, as the API's list writes"
    # A link altered, garbled, the API's list's or another account's: the page answers 422, the message and a link to
    # the newest exams in place of the list.
    payload, signature = older.split("cursor=")[1].split(".")
    altered = f"/portal/exams?cursor={payload[:-1]}{'A' if payload[-1] != 'A' else 'B'}.{signature}"
    api = portal.client.get("/exams?limit=1", headers=patient["headers"]).links["next"]["url"].split("?")[1]
    links = [
        (pat, altered),
        (pat, "/portal/exams?cursor=x"),
        (pat, f"/portal/exams?{api}"),
        (signed_in(portal, doctor), older),
    ]
    assert "não é válido" not in first.text + second.text and "not valid" not in first.text + second.text
    for client, link in links:
        refused = client.get(link)
        assert refused.status_code == 422, link
        assert (
            "This page link is not valid" in refused.text and '<a href="/portal/exams">Newest exams</a>' in refused.text
        )
        assert not re.findall(r">(First|Second|Third)</a>", refused.text), "no rows under a refused link"
