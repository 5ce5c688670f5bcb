"""The patient's rights under the LGPD: consent history, the access log, the export, erasure."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, date, datetime, timedelta

import pytest
from api_support import CONSENT, PASSWORD, running_clinic, status_and_detail
from file_support import check_uploads, pdf_bytes
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_api.accounts.service import TOO_MANY_GUESSES
from clinic_api.models import Appointment, AuditLog, Exam, OutboxEvent, PatientProfile, User
from clinic_api.routes.privacy import WRONG_PASSWORD
from clinic_api.security import FORBIDDEN

PDF = pdf_bytes()


def soon(days: int, hour: int) -> datetime:
    """An instant `days` ahead at `hour`:00 UTC, inside the booking horizon."""
    return (datetime.now(UTC) + timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)


@pytest.fixture
def clinic(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        clinic.aws = clinic_aws  # for ready_exam's file check
        yield clinic


def ready_exam(clinic, staff, patient, doctor=None, exam_type="Hemograma") -> int:
    exam = clinic.client.post(
        "/exams",
        headers=staff["headers"],
        json={"patient_id": patient["id"], "exam_type": exam_type, "doctor_id": doctor and doctor["id"]},
    ).json()["id"]
    clinic.client.put(
        f"/exams/{exam}/result", headers={**staff["headers"], "Content-Type": "application/pdf"}, content=PDF
    )
    assert check_uploads(clinic.app.state.engine, clinic.aws) == ["verified"], "the file processor checks it"
    assert clinic.client.post(f"/exams/{exam}/ready", headers=staff["headers"]).status_code == 200
    return exam


def book(clinic, patient, doctor, starts_at: datetime) -> int:
    response = clinic.client.post(
        "/appointments",
        headers=patient["headers"],
        json={"doctor_id": doctor["id"], "starts_at": starts_at.isoformat()},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_every_read_of_a_patients_data_by_someone_else_is_in_their_access_log(clinic):
    patient, other = clinic.user("patient"), clinic.user("patient")
    doctor, staff = clinic.user("doctor", "dr house"), clinic.user("staff", "sam staff")
    book(clinic, patient, doctor, soon(3, 10))
    book(clinic, other, doctor, soon(3, 11))
    exam = ready_exam(clinic, staff, patient, doctor)
    # The patient's own reads are not in it.
    for path in ("/me/profile", "/appointments", "/exams", f"/exams/{exam}", f"/exams/{exam}/download"):
        assert clinic.client.get(path, headers=patient["headers"]).status_code == 200, path
    assert clinic.client.get("/me/access-log", headers=patient["headers"]).json() == []
    # Others' reads are, each naming what was read.
    reads = [
        (doctor, f"/patients/{patient['id']}/profile"),
        (doctor, "/appointments"),
        (doctor, "/exams"),
        (doctor, f"/exams/{exam}"),
        (doctor, f"/exams/{exam}/download"),
        (staff, f"/patients/{patient['id']}/profile"),
    ]
    for reader, path in reads:
        assert clinic.client.get(path, headers=reader["headers"]).status_code == 200, path
    log = clinic.client.get("/me/access-log", headers=patient["headers"]).json()
    seen = [(e["who_name"], e["who_role"], e["action"], e["exam_id"], e["client_ip"]) for e in log]
    assert seen == [
        ("Sam Staff", "staff", "profile.read", None, "testclient"),
        ("Dr House", "doctor", "result.download", exam, "testclient"),
        ("Dr House", "doctor", "exam.read", exam, "testclient"),
        ("Dr House", "doctor", "exams.list", None, "testclient"),
        ("Dr House", "doctor", "appointments.list", None, "testclient"),
        ("Dr House", "doctor", "profile.read", None, "testclient"),
    ]
    assert all(datetime.fromisoformat(e["at"]) > datetime.now(UTC) - timedelta(minutes=5) for e in log)
    # The doctor's list showed two patients: each one's log has the read, neither sees the other's.
    other_log = clinic.client.get("/me/access-log", headers=other["headers"]).json()
    assert [e["action"] for e in other_log] == ["appointments.list"]


def test_consent_changes_are_kept_as_history(clinic):
    patient = clinic.user("patient")
    given = clinic.client.post(
        "/me/consents", headers=patient["headers"], json={**CONSENT, "purposes": ["care", "research"]}
    )
    assert given.status_code == 201 and given.json()["purposes"] == ["care", "research"]
    clinic.client.post("/me/consents", headers=patient["headers"], json=CONSENT)
    history = clinic.client.get("/me/consents", headers=patient["headers"]).json()
    assert [c["purposes"] for c in history] == [["care", "research"], ["care"]]
    assert all(c["notice_version"] == "2026-11" for c in history)
    stale = clinic.client.post("/me/consents", headers=patient["headers"], json={**CONSENT, "notice_version": "1"})
    assert stale.status_code == 422 and [e["field"] for e in stale.json()["errors"]] == ["consent.notice_version"]
    assert clinic.client.get("/privacy/notice").json() == {
        "version": "2026-11",
        "purposes": ["care", "research", "communications"],
    }


def test_the_export_holds_everything_of_the_patient_and_nothing_of_another(clinic):
    staff, doctor = clinic.user("staff"), clinic.user("doctor")
    ana, bia = clinic.user("patient", "ana lima"), clinic.user("patient", "bia rocha")
    clinic.client.patch(
        "/me/profile", headers=ana["headers"], json={"phone": "+55 21 90000-1111", "cpf": "529.982.247-25"}
    )
    clinic.client.patch(
        "/me/profile", headers=bia["headers"], json={"phone": "+55 31 98888-7777", "cpf": "123.456.789-09"}
    )
    clinic.client.post("/me/consents", headers=ana["headers"], json=CONSENT)
    ana_visit = book(clinic, ana, doctor, soon(4, 10))
    bia_visit = book(clinic, bia, doctor, soon(4, 11))
    ana_exam = ready_exam(clinic, staff, ana, exam_type="Glicemia")
    bia_exam = ready_exam(clinic, staff, bia, exam_type="Tomografia")
    pending = clinic.client.post("/exams", headers=staff["headers"], json={"patient_id": ana["id"], "exam_type": "RX"})
    clinic.client.get(f"/patients/{ana['id']}/profile", headers=doctor["headers"])
    clinic.client.get(f"/patients/{bia['id']}/profile", headers=staff["headers"])

    response = clinic.client.get("/me/export", headers=ana["headers"])
    assert response.status_code == 200, response.text
    export = response.json()
    assert export["account"]["email"] == ana["email"] and export["account"]["patient"]["phone"] == "+55 21 90000-1111"
    assert export["account"]["patient"]["cpf"] == "***.***.***-25"
    assert [a["id"] for a in export["appointments"]] == [ana_visit]
    assert {e["id"]: e["exam_type"] for e in export["exams"]} == {ana_exam: "Glicemia", pending.json()["id"]: "RX"}
    assert [c["purposes"] for c in export["consents"]] == [["care"]]
    assert [(e["who_role"], e["action"]) for e in export["access_log"]] == [("doctor", "profile.read")]
    links = {e["id"]: e["download_url"] for e in export["exams"]}
    assert links[pending.json()["id"]] is None, "no link before the result is ready"
    with urllib.request.urlopen(links[ana_exam], timeout=10) as pdf:
        assert pdf.read() == PDF
    assert "X-Amz-Expires=300" in links[ana_exam] and export["download_expires_in"] == 300
    text = json.dumps(export)
    for trace in (bia["email"], "Bia Rocha", "98888", "Tomografia", f"/{bia_exam}/", "***-09"):
        assert trace not in text, f"another patient's {trace!r} is in the export"
    assert bia_visit not in [a["id"] for a in export["appointments"]]
    with Session(clinic.app.state.engine) as session:
        audited = session.scalars(select(AuditLog.action).where(AuditLog.user_id == ana["id"])).all()
    assert "data.export" in audited


def test_erasure_erases_what_the_law_lets_go_and_keeps_the_medical_record_marked(clinic):
    staff, doctor, patient = clinic.user("staff"), clinic.user("doctor"), clinic.user("patient", "eva nunes")
    clinic.client.patch(
        "/me/profile",
        headers=patient["headers"],
        json={"cpf": "529.982.247-25", "phone": "+55 11 97777-0000", "date_of_birth": "1980-01-02",
              "emergency_contact_name": "Ivo", "emergency_contact_phone": "+55 11 96666-0000", "language": "en"},
    )  # fmt: skip
    upcoming = soon(5, 10)
    future = book(clinic, patient, doctor, upcoming)
    exam = ready_exam(clinic, staff, patient, doctor)
    past = datetime(2025, 6, 30, 9, 0, tzinfo=UTC)
    with Session(clinic.app.state.engine) as session:  # a visit that already happened: the record's last entry
        ends = past + timedelta(minutes=30)
        session.add(
            Appointment(
                patient_id=patient["id"], doctor_id=doctor["id"], starts_at=past, ends_at=ends, kind="in_person"
            )
        )
        session.execute(Exam.__table__.update().values(created_at=datetime(2025, 1, 1, tzinfo=UTC)))
        session.commit()

    wrong = clinic.client.post("/me/erasure", headers=patient["headers"], json={"password": "not my password"})
    assert status_and_detail(wrong) == (400, WRONG_PASSWORD)
    erased = clinic.client.post("/me/erasure", headers=patient["headers"], json={"password": PASSWORD})
    assert erased.status_code == 200, erased.text
    assert erased.json()["retained_until"] == "2045-06-30", "20 years after the last entry (Lei 13.787/2018 art. 6)"

    with Session(clinic.app.state.engine) as session:
        user = session.get_one(User, patient["id"])
        profile = session.get_one(PatientProfile, patient["id"])
        assert user.email == f"erased-{patient['id']}@erased.invalid" and user.erased_at and user.disabled_at
        assert user.retained_until == date(2045, 6, 30)
        assert (profile.phone, profile.emergency_contact_name, profile.emergency_contact_phone) == (None, None, None)
        # The record's identification and the record itself are kept.
        assert user.full_name == "Eva Nunes" and profile.date_of_birth == date(1980, 1, 2) and profile.cpf_encrypted
        assert session.get_one(Exam, exam).result_key
        mine = Appointment.patient_id == patient["id"]
        statuses = dict(session.execute(select(Appointment.starts_at, Appointment.status).where(mine)).all())
        assert statuses == {past: "confirmed", upcoming: "cancelled"}, "future freed"
        payloads = [(e.event_type, e.payload) for e in session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))]
        trail = session.execute(
            select(AuditLog.action, AuditLog.outcome).where(AuditLog.action == "account.erasure").order_by(AuditLog.id)
        ).all()
    farewell = [p for t, p in payloads if t == "account.deleted"]
    assert farewell == [
        {
            "recipient_email": patient["email"],
            "recipient_name": "Eva Nunes",
            "recipient_language": "en",
            "user_id": patient["id"],
            "retained_until": "2045-06-30",
        }
    ]
    assert [t for t, p in payloads if p.get("recipient_email") == patient["email"]] == ["account.deleted"], (
        "earlier emails to the erased address are gone from the outbox"
    )
    assert trail == [("account.erasure", "denied"), ("account.erasure", "requested"), ("account.erasure", "completed")]
    assert future  # booked above, now cancelled

    assert clinic.client.get("/me/export", headers=patient["headers"]).status_code == 401, "its token ends at once"
    login = clinic.client.post("/auth/login", json={"email": patient["email"], "password": PASSWORD})
    assert login.status_code == 401, "the erased email no longer names an account"
    lookup = clinic.client.post("/patients/lookup", headers=staff["headers"], json={"cpf": "529.982.247-25"})
    assert lookup.status_code == 404
    assert clinic.client.get(f"/patients/{patient['id']}/profile", headers=staff["headers"]).status_code == 404


def test_wrong_erasure_passwords_are_throttled_and_the_account_stays(clinic):
    """Each wrong password is audited as denied and counts as a failed sign-in: after five, even the right one gets
    429, so a stolen token cannot guess the password here unthrottled, and nothing is erased."""
    patient = clinic.user("patient")
    for _ in range(5):  # auth.max_login_failures
        wrong = clinic.client.post("/me/erasure", headers=patient["headers"], json={"password": "not my password"})
        assert status_and_detail(wrong) == (400, WRONG_PASSWORD)
    locked = clinic.client.post("/me/erasure", headers=patient["headers"], json={"password": PASSWORD})
    assert status_and_detail(locked) == (429, TOO_MANY_GUESSES) and int(locked.headers["Retry-After"]) > 0
    with Session(clinic.app.state.engine) as session:
        assert session.get_one(User, patient["id"]).erased_at is None
        outcomes = session.scalars(
            select(AuditLog.outcome).where(AuditLog.action == "account.erasure", AuditLog.user_id == patient["id"])
        ).all()
    assert outcomes == ["denied"] * 5


def test_only_a_patient_asks_for_their_own_erasure(clinic):
    staff = clinic.user("staff")
    refused = clinic.client.post("/me/erasure", headers=staff["headers"], json={"password": PASSWORD})
    assert status_and_detail(refused) == (403, FORBIDDEN)


def test_staff_read_the_clinics_audit_log_newest_first_by_page_and_filter(clinic):
    staff, admin = clinic.user("staff", "sam staff"), clinic.user("admin")
    doctor, patient = clinic.user("doctor", "dr house"), clinic.user("patient", "ana lima")
    exam = ready_exam(clinic, staff, patient, doctor)
    clinic.client.get(f"/exams/{exam}/download", headers=doctor["headers"])
    clinic.client.get(f"/patients/{patient['id']}/profile", headers=doctor["headers"])
    clinic.client.post(f"/users/{doctor['id']}/disable", headers=staff["headers"])

    answer = clinic.client.get("/audit", headers=admin["headers"])
    page = answer.json()
    rows = [(r["user_name"], r["action"], r["subject_name"], r["exam_id"]) for r in page]
    assert rows[:3] == [
        ("Sam Staff", "account.disabled", "Dr House", None),
        ("Dr House", "profile.read", "Ana Lima", None),
        ("Dr House", "result.download", "Ana Lima", exam),
    ], "newest first, naming who did what to whom"
    assert {"result.upload"} <= {r["action"] for r in page} and "link" not in answer.headers

    by_doctor = clinic.client.get(f"/audit?user_id={doctor['id']}&limit=1", headers=staff["headers"])
    assert [r["action"] for r in by_doctor.json()] == ["profile.read"]
    rest = clinic.client.get(by_doctor.links["next"]["url"], headers=staff["headers"])  # the filter kept
    assert [r["action"] for r in rest.json()] == ["result.download"] and "link" not in rest.headers
    downloads = clinic.client.get("/audit?action=result.download", headers=staff["headers"]).json()
    assert [(r["user_role"], r["outcome"]) for r in downloads] == [("doctor", "granted")]
    about_doctor = clinic.client.get(f"/audit?subject_id={doctor['id']}", headers=staff["headers"]).json()
    assert [(r["user_name"], r["action"]) for r in about_doctor] == [("Sam Staff", "account.disabled")]
    assert clinic.client.get("/audit?action=DROP TABLE", headers=staff["headers"]).status_code == 422

    # Who read the log is on record; the reads name no patient, so no patient's access log lists them.
    reads = clinic.client.get("/audit?action=audit.read", headers=staff["headers"]).json()
    assert [(r["user_name"], r["subject_id"], r["detail"]) for r in reads] == [
        ("Sam Staff", None, {"subject_id": doctor["id"]}),
        ("Sam Staff", None, {"action": "result.download"}),
        ("Sam Staff", None, {"user_id": doctor["id"], "after_id": by_doctor.json()[0]["id"]}),  # the position
        ("Sam Staff", None, {"user_id": doctor["id"]}),
        ("Admin", None, {}),
    ]
    access_log = clinic.client.get("/me/access-log", headers=patient["headers"]).json()
    assert "audit.read" not in [e["action"] for e in access_log]
    for caller in (patient, doctor):
        assert status_and_detail(clinic.client.get("/audit", headers=caller["headers"])) == (403, FORBIDDEN)


NEW_ENDPOINTS = {  # (method, path): the error statuses the OpenAPI document must list
    ("get", "/me/profile"): {"401"},
    ("patch", "/me/profile"): {"401", "409", "422"},
    ("post", "/me/password"): {"400", "401", "422"},
    ("get", "/patients/{patient_id}/profile"): {"401", "403", "404", "422"},
    ("patch", "/patients/{patient_id}/profile"): {"401", "403", "404", "409", "422"},
    ("post", "/patients/lookup"): {"401", "403", "404", "422"},
    ("get", "/doctors/{doctor_id}"): {"401", "404", "422"},
    ("put", "/doctors/{doctor_id}/profile"): {"401", "403", "404", "409", "422"},
    ("get", "/users"): {"401", "403", "422"},
    ("post", "/users/{account_id}/disable"): {"401", "403", "404", "409", "422"},
    ("post", "/users/{account_id}/enable"): {"401", "403", "404", "409", "422"},
    ("get", "/privacy/notice"): set(),
    ("get", "/me/consents"): {"401", "403"},
    ("post", "/me/consents"): {"401", "403", "422"},
    ("get", "/me/access-log"): {"401", "403", "422"},
    ("get", "/me/export"): {"401", "403"},
    ("post", "/me/erasure"): {"400", "401", "403", "422", "429"},
    ("get", "/audit"): {"401", "403", "422"},
    ("post", "/auth/register"): {"422"},
    ("post", "/auth/verify"): {"400", "422"},
}


def test_every_new_endpoint_is_in_the_openapi_document_with_its_errors():
    from clinic_api.main import create_app
    from clinic_api.settings import Settings

    paths = create_app(Settings(outbox={"relay_enabled": False})).openapi()["paths"]
    for (method, path), statuses in NEW_ENDPOINTS.items():
        assert method in paths.get(path, {}), f"{method.upper()} {path} is not in the OpenAPI document"
        responses = paths[path][method]["responses"]
        assert statuses <= set(responses), f"{method.upper()} {path} lists {sorted(responses)}, not {sorted(statuses)}"
        assert all(responses[s]["description"] for s in statuses), path
