"""Input that the database or the notifier cannot hold never gets stored, what is stored never makes a read fail,
and a state changes once however many requests race to change it."""

from __future__ import annotations

import pytest
from api_support import PASSWORD, at_once, future, running_clinic, served_clinic, status_and_detail
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from clinic_api.appointments.service import NOT_FOUND as APPOINTMENT_NOT_FOUND
from clinic_api.appointments.video import NOT_FOUND as VISIT_NOT_FOUND
from clinic_api.exams.service import NOT_FOUND as EXAM_NOT_FOUND
from clinic_api.models import AuditLog, OutboxEvent

OUT_OF_RANGE_IDS = [2**31, 2**63, 10**30, 0, -1]
PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


@pytest.fixture
def clinic(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        yield clinic


def errors(response) -> list[str]:
    assert response.status_code == 422, response.text
    return [e["field"] for e in response.json()["errors"]]


def count(clinic, *where) -> int:
    with Session(clinic.app.state.engine) as session:
        return session.scalar(select(func.count()).select_from(OutboxEvent).where(*where)) or 0


@pytest.mark.parametrize("big", OUT_OF_RANGE_IDS)
def test_a_path_id_outside_the_id_column_is_not_found(clinic, big):
    staff, patient = clinic.user("staff"), clinic.user("patient")
    requests = [
        ("get", f"/exams/{big}", staff, EXAM_NOT_FOUND),
        ("post", f"/exams/{big}/ready", staff, EXAM_NOT_FOUND),
        ("get", f"/exams/{big}/download", patient, EXAM_NOT_FOUND),
        ("post", f"/appointments/{big}/cancel", patient, APPOINTMENT_NOT_FOUND),
        ("post", f"/appointments/{big}/video-token", patient, VISIT_NOT_FOUND),
    ]
    for method, path, who, detail in requests:
        response = getattr(clinic.client, method)(path, headers=who["headers"])
        assert status_and_detail(response) == (404, detail), path
    upload = clinic.client.put(
        f"/exams/{big}/result", headers={**staff["headers"], "Content-Type": "application/pdf"}, content=PDF
    )
    assert status_and_detail(upload) == (404, EXAM_NOT_FOUND)
    with Session(clinic.app.state.engine) as session:
        audited = session.execute(select(AuditLog.user_id, AuditLog.exam_id, AuditLog.outcome)).all()
    assert audited == [(patient["id"], None, "denied")], "the refused download is audited (no id: it cannot be held)"


def test_a_body_id_outside_the_id_column_is_refused_naming_the_field(clinic):
    staff, doctor, patient = clinic.user("staff"), clinic.user("doctor"), clinic.user("patient")
    big = 2**31
    booking = {"doctor_id": big, "patient_id": -1, "starts_at": future()}
    assert errors(clinic.client.post("/appointments", headers=staff["headers"], json=booking)) == [
        "doctor_id",
        "patient_id",
    ]
    exam = {"patient_id": big, "doctor_id": 2**63, "exam_type": "MRI"}
    assert errors(clinic.client.post("/exams", headers=staff["headers"], json=exam)) == ["patient_id", "doctor_id"]
    fine = {"patient_id": patient["id"], "doctor_id": doctor["id"], "exam_type": "MRI"}
    assert clinic.client.post("/exams", headers=staff["headers"], json=fine).status_code == 201


@pytest.mark.parametrize("bad", ["Ana\x00", "Ana\nBcc: x@example.org", "\x1b[31mAna", "Ana\x7f", "A\u0085na"])
def test_control_characters_are_refused_in_every_text_field(clinic, bad):
    admin, staff, patient = clinic.user("admin"), clinic.user("staff"), clinic.user("patient")
    new_user = {"email": "new@example.org", "full_name": bad, "password": PASSWORD + "!x", "role": "doctor"}
    assert errors(clinic.client.post("/users", headers=admin["headers"], json=new_user)) == ["full_name"]
    registration = {"email": "self@example.org", "full_name": bad}
    assert errors(clinic.client.post("/auth/register", json=registration)) == ["full_name"]
    exam = {"patient_id": patient["id"], "exam_type": bad}
    assert errors(clinic.client.post("/exams", headers=staff["headers"], json=exam)) == ["exam_type"]
    login = {"email": "self@example.org", "password": bad}
    assert errors(clinic.client.post("/auth/login", json=login)) == ["password"]
    assert count(clinic) == 0, "nothing stored, no email queued"


def test_names_are_trimmed_and_refused_when_nothing_is_left(clinic):
    admin = clinic.user("admin")
    for blank in ("", "   ", "\u3000"):
        body = {"email": "d@example.org", "full_name": blank, "password": PASSWORD + "!x", "role": "doctor"}
        assert errors(clinic.client.post("/users", headers=admin["headers"], json=body)) == ["full_name"], blank
    body = {"email": "d@example.org", "full_name": "  Dr. Ana Souza ", "password": PASSWORD + "!x", "role": "doctor"}
    assert clinic.client.post("/users", headers=admin["headers"], json=body).json()["full_name"] == "Dr. Ana Souza"


def test_instants_stored_beyond_what_python_holds_never_make_a_read_fail(clinic):
    staff, doctor, patient = clinic.user("staff"), clinic.user("doctor"), clinic.user("patient")
    exam_id = clinic.client.post(
        "/exams", headers=staff["headers"], json={"patient_id": patient["id"], "exam_type": "MRI"}
    ).json()["id"]
    with clinic.app.state.engine.begin() as db:  # as an older API or a hand-made fix could have stored them
        for starts_at in ("10000-01-01 00:00:00+00", "0001-06-01 00:00:00+00 BC"):
            db.execute(
                text(
                    "INSERT INTO appointments (patient_id, doctor_id, starts_at, ends_at, kind, status)"
                    " VALUES (:p, :d, CAST(:s AS timestamptz), CAST(:s AS timestamptz) + interval '30 minutes',"
                    " 'in_person', 'confirmed')"
                ),
                {"p": patient["id"], "d": doctor["id"], "s": starts_at},
            )
        db.execute(text("UPDATE exams SET created_at = 'infinity' WHERE id = :id"), {"id": exam_id})
    listed = clinic.client.get("/appointments", headers=patient["headers"])
    assert listed.status_code == 200, listed.text
    assert sorted(a["starts_at"] for a in listed.json()) == ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"]
    for path in ("/exams", f"/exams/{exam_id}"):  # the hot pool and the ORM session
        read = clinic.client.get(path, headers=patient["headers"])
        assert read.status_code == 200, (path, read.text)
        assert "9999-12-31T23:59:59.999999Z" in read.text


def test_ten_concurrent_cancels_change_the_appointment_once_and_record_one_event(postgres, clinic_aws):
    with served_clinic(postgres, clinic_aws) as clinic:
        doctor, patient = clinic.user("doctor"), clinic.user("patient")
        booked = clinic.client.post(
            "/appointments", headers=patient["headers"], json={"doctor_id": doctor["id"], "starts_at": future(2)}
        ).json()  # two days ahead: before the patients' cancellation cutoff (24 h)
        path = f"/appointments/{booked['id']}/cancel"
        responses = at_once(lambda: clinic.client.post(path, headers=patient["headers"]) for _ in range(10))
        assert [(r.status_code, r.json()["status"]) for r in responses] == [(200, "cancelled")] * 10
        assert count(clinic, OutboxEvent.event_type == "appointment.cancelled") == 1


def test_ten_concurrent_ready_marks_change_the_exam_once_and_record_one_event(postgres, clinic_aws):
    with served_clinic(postgres, clinic_aws) as clinic:
        staff, patient = clinic.user("staff"), clinic.user("patient")
        exam_id = clinic.client.post(
            "/exams", headers=staff["headers"], json={"patient_id": patient["id"], "exam_type": "MRI"}
        ).json()["id"]
        key = f"exams/{exam_id}/result.pdf"
        clinic_aws.client("s3").put_object(Bucket=clinic_aws.bucket, Key=key, Body=PDF)
        with clinic.app.state.engine.begin() as db:  # uploaded and checked by the file processor
            db.execute(
                text(
                    "UPDATE exams SET status = 'verified', result_key = :key, result_checked_at = now() WHERE id = :id"
                ),
                {"key": key, "id": exam_id},
            )
        path = f"/exams/{exam_id}/ready"
        responses = at_once(lambda: clinic.client.post(path, headers=staff["headers"]) for _ in range(10))
        assert [(r.status_code, r.json()["status"]) for r in responses] == [(200, "ready")] * 10
        assert count(clinic, OutboxEvent.event_type == "exam.result.ready") == 1
        assert count(clinic, OutboxEvent.event_type == "exam.completed") == 1
