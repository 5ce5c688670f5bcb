"""Exams corrected before they are ready, cancelled with a reason, and results replaced without losing the earlier
file: the versioned bucket keeps both objects, the history and the audit name both versions."""

from __future__ import annotations

import httpx
import pytest
from api_support import running_clinic, status_and_detail
from file_support import check_uploads, pdf_bytes
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_api.exams.service import ALREADY_READY, EXAM_CANCELLED, NO_DOCTOR
from clinic_api.models import OutboxEvent
from clinic_api.security import FORBIDDEN

FIRST, SECOND = pdf_bytes(pages=1), pdf_bytes(pages=2)  # real PDFs: the file processor verifies each upload


@pytest.fixture
def clinic(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        yield clinic


@pytest.fixture
def people(clinic):
    return {role: clinic.user(role) for role in ("staff", "patient", "doctor")}


def new_exam(clinic, people, **extra) -> dict:
    body = {"patient_id": people["patient"]["id"], "exam_type": "Blood count", **extra}
    response = clinic.client.post("/exams", headers=people["staff"]["headers"], json=body)
    assert response.status_code == 201, response.text
    return response.json()


def upload(clinic, people, exam_id, pdf):
    headers = {**people["staff"]["headers"], "Content-Type": "application/pdf"}
    return clinic.client.put(f"/exams/{exam_id}/result", headers=headers, content=pdf)


def audit(clinic, people, exam_id) -> list[dict]:
    response = clinic.client.get(f"/exams/{exam_id}/audit", headers=people["staff"]["headers"])
    assert response.status_code == 200, response.text
    return response.json()


def test_staff_correct_the_type_and_doctor_until_the_result_is_ready_and_the_audit_keeps_both(
    clinic, clinic_aws, people
):
    exam = new_exam(clinic, people)
    url, staff = f"/exams/{exam['id']}", people["staff"]["headers"]
    corrected = clinic.client.patch(
        url, headers=staff, json={"exam_type": "Lipid panel", "doctor_id": people["doctor"]["id"]}
    )
    assert corrected.status_code == 200, corrected.text
    assert (corrected.json()["exam_type"], corrected.json()["doctor_id"]) == ("Lipid panel", people["doctor"]["id"])
    [entry] = audit(clinic, people, exam["id"])
    assert (entry["action"], entry["user_id"]) == ("exam.correct", people["staff"]["id"])
    assert entry["detail"] == {
        "exam_type": {"from": "Blood count", "to": "Lipid panel"},
        "doctor_id": {"from": None, "to": people["doctor"]["id"]},
    }
    unknown = clinic.client.patch(url, headers=staff, json={"doctor_id": 999999})
    assert unknown.json()["errors"] == [{"field": "doctor_id", "problem": NO_DOCTOR}]
    empty = clinic.client.patch(url, headers=staff, json={})
    assert empty.status_code == 422 and "give exam_type, doctor_id or both" in empty.text
    refused = clinic.client.patch(url, headers=people["doctor"]["headers"], json={"exam_type": "X"})
    assert status_and_detail(refused) == (403, FORBIDDEN)

    upload(clinic, people, exam["id"], FIRST)
    assert clinic.client.patch(url, headers=staff, json={"exam_type": "Glucose"}).status_code == 200, "uploaded: still"
    assert check_uploads(clinic.app.state.engine, clinic_aws) == ["verified"]
    assert clinic.client.post(f"/exams/{exam['id']}/ready", headers=staff).json()["status"] == "ready"
    too_late = clinic.client.patch(url, headers=staff, json={"exam_type": "Thyroid"})
    assert status_and_detail(too_late) == (409, ALREADY_READY)
    assert clinic.client.get(url, headers=staff).json()["exam_type"] == "Glucose"


def test_a_cancelled_exam_tells_the_patient_why_and_takes_no_result(clinic, people):
    exam = new_exam(clinic, people)
    url, staff = f"/exams/{exam['id']}", people["staff"]["headers"]
    blank = clinic.client.post(f"{url}/cancel", headers=staff, json={"reason": "   "})
    assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "reason"
    patient_try = clinic.client.post(f"{url}/cancel", headers=people["patient"]["headers"], json={"reason": "x"})
    assert status_and_detail(patient_try) == (403, FORBIDDEN)
    cancelled = clinic.client.post(f"{url}/cancel", headers=staff, json={"reason": "Requested  twice"})
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["cancel_reason"]) == ("cancelled", "Requested twice")
    again = clinic.client.post(f"{url}/cancel", headers=staff, json={"reason": "again"})
    assert again.json()["cancel_reason"] == "Requested twice", "cancelling twice changes nothing"
    with Session(clinic.app.state.engine) as session:
        sent = session.scalars(select(OutboxEvent).where(OutboxEvent.event_type == "exam.cancelled")).all()
    assert [(e.payload["reason"], e.payload["recipient_email"]) for e in sent] == [
        ("Requested twice", people["patient"]["email"])
    ]
    assert status_and_detail(upload(clinic, people, exam["id"], FIRST)) == (409, EXAM_CANCELLED)
    assert status_and_detail(clinic.client.post(f"{url}/ready", headers=staff)) == (409, EXAM_CANCELLED)
    assert status_and_detail(clinic.client.patch(url, headers=staff, json={"exam_type": "X"})) == (409, EXAM_CANCELLED)
    assert [a["action"] for a in audit(clinic, people, exam["id"])] == ["exam.cancel"]


def test_an_exam_cancelled_while_its_result_is_checked_stays_cancelled(clinic, clinic_aws, people):
    exam = new_exam(clinic, people)
    upload(clinic, people, exam["id"], FIRST)
    cancelled = clinic.client.post(
        f"/exams/{exam['id']}/cancel", headers=people["staff"]["headers"], json={"reason": "Wrong patient"}
    )
    assert cancelled.json()["status"] == "cancelled"
    assert check_uploads(clinic.app.state.engine, clinic_aws) == ["superseded"], "the verdict changes nothing"
    assert clinic.client.get(f"/exams/{exam['id']}", headers=people["staff"]["headers"]).json()["status"] == "cancelled"


def test_a_ready_exam_cannot_be_cancelled(clinic, clinic_aws, people):
    exam = new_exam(clinic, people)
    upload(clinic, people, exam["id"], FIRST)
    check_uploads(clinic.app.state.engine, clinic_aws)
    assert clinic.client.post(f"/exams/{exam['id']}/ready", headers=people["staff"]["headers"]).status_code == 200
    refused = clinic.client.post(
        f"/exams/{exam['id']}/cancel", headers=people["staff"]["headers"], json={"reason": "late"}
    )
    assert status_and_detail(refused) == (409, ALREADY_READY)


def test_a_replaced_result_keeps_the_earlier_file_and_the_audit_names_both_versions(clinic, clinic_aws, people):
    exam = new_exam(clinic, people)
    staff, patient = people["staff"]["headers"], people["patient"]["headers"]
    assert upload(clinic, people, exam["id"], FIRST).status_code == 200
    check_uploads(clinic.app.state.engine, clinic_aws)
    assert clinic.client.post(f"/exams/{exam['id']}/ready", headers=staff).status_code == 200
    replaced = upload(clinic, people, exam["id"], SECOND)
    assert replaced.json()["status"] == "uploaded", "a replaced result is checked again before patients see it"
    assert check_uploads(clinic.app.state.engine, clinic_aws) == ["verified"]
    assert clinic.client.post(f"/exams/{exam['id']}/ready", headers=staff).status_code == 200

    history = clinic.client.get(f"/exams/{exam['id']}/results", headers=staff).json()  # newest first
    assert [h["size_bytes"] for h in history] == [len(SECOND), len(FIRST)]
    assert history[0]["replaced_at"] is None and history[1]["replaced_at"] is not None
    second_version, first_version = history[0]["version_id"], history[1]["version_id"]
    assert first_version and second_version and first_version != second_version

    trail = [(a["action"], a["detail"]) for a in audit(clinic, people, exam["id"]) if a["action"].startswith("result.")]
    assert [(action, detail["version_id"], detail["replaces_version_ids"]) for action, detail in trail] == [
        ("result.replace", second_version, [first_version]),
        ("result.upload", first_version, []),
    ]  # newest first
    # The earlier file is still in the bucket, byte for byte, under the version the history names.
    s3 = clinic_aws.client("s3")
    first_key = trail[1][1]["key"]
    kept = s3.get_object(Bucket=clinic_aws.bucket, Key=first_key, VersionId=first_version)["Body"].read()
    assert kept == FIRST
    link = clinic.client.get(f"/exams/{exam['id']}/download", headers=patient).json()["url"]
    assert "versionId=" in link and httpx.get(link).content == SECOND, "the patient gets the current version"
    assert clinic.client.get(f"/exams/{exam['id']}/results", headers=patient).status_code == 403
