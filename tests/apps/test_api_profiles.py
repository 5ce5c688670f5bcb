"""Profiles (patient, doctor), the CPF's storage, password changes, disabling accounts, consent at sign-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from api_support import CONSENT, PASSWORD, running_clinic, status_and_detail
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_api import cpf
from clinic_api.accounts.service import TOO_MANY_GUESSES, WRONG_PASSWORD
from clinic_api.models import AuditLog, Consent, OutboxEvent, PatientProfile
from clinic_api.routes.accounts import BAD_LOGIN, DISABLED, NOT_YOURS_TO_DISABLE, NOT_YOURSELF
from clinic_api.routes.profiles import CPF_TAKEN, CRM_TAKEN, NO_PATIENT, PATIENTS_ONLY
from clinic_api.security import FORBIDDEN

CPF = "529.982.247-25"
SOON = (datetime.now(UTC) + timedelta(days=2)).replace(hour=10, minute=0, second=0, microsecond=0).isoformat()
OTHER_CPF = "123.456.789-09"


@pytest.fixture
def clinic(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        yield clinic


def events(clinic, event_type: str) -> list[dict]:
    with Session(clinic.app.state.engine) as session:
        query = select(OutboxEvent.payload).where(OutboxEvent.event_type == event_type).order_by(OutboxEvent.id)
        return list(session.scalars(query))


def errors(response) -> list[str]:
    return [e["field"] for e in response.json().get("errors", [])]


@pytest.mark.parametrize("number", [CPF, "52998224725", OTHER_CPF, " 123.456.789-09 "])
def test_a_cpf_with_right_check_digits_is_valid(number):
    assert cpf.is_valid(number)


@pytest.mark.parametrize(
    "number, why",
    [
        ("529.982.247-24", "second check digit wrong"),
        ("529.982.247-15", "first check digit wrong"),
        ("111.111.111-11", "all digits equal (passes the arithmetic)"),
        ("5299822472", "10 digits"),
        ("529982247250", "12 digits"),
        ("529.982.247-2a", "a letter"),
        ("５２９９８２２４７２５", "full-width digits"),
    ],
)
def test_a_cpf_without_right_check_digits_is_refused(number, why):
    assert not cpf.is_valid(number), why


def test_a_patient_completes_their_profile_and_sees_their_cpf_only_masked(clinic):
    patient = clinic.user("patient")
    body = {
        "full_name": "Ana Souza",
        "language": "en",
        "date_of_birth": "1990-05-17",
        "phone": "+55 11 91234-5678",
        "emergency_contact_name": "João Souza",
        "emergency_contact_phone": "+55 11 99876-5432",
        "cpf": CPF,
    }
    response = clinic.client.patch("/me/profile", headers=patient["headers"], json=body)
    assert response.status_code == 200, response.text
    profile = clinic.client.get("/me/profile", headers=patient["headers"]).json()
    assert profile["full_name"] == "Ana Souza" and profile["language"] == "en"
    assert profile["patient"] == {
        "date_of_birth": "1990-05-17",
        "phone": "+55 11 91234-5678",
        "emergency_contact_name": "João Souza",
        "emergency_contact_phone": "+55 11 99876-5432",
        "cpf": "***.***.***-25",
    }
    with Session(clinic.app.state.engine) as session:
        stored = session.get_one(PatientProfile, patient["id"])
        assert "52998224725" not in stored.cpf_hash + stored.cpf_encrypted, "the CPF is never stored in clear"
        assert stored.cpf_hash != cpf.CpfVault.from_secret("another key" * 4).lookup_hash(CPF), "the hash is keyed"
    staff = clinic.user("staff")
    listing = clinic.client.get("/users?role=patient", headers=staff["headers"])
    assert listing.status_code == 200 and "52998224725" not in listing.text and "-25" not in listing.text
    (event,) = events(clinic, "account.updated")
    assert event["change"] == "profile" and event["recipient_language"] == "en"
    assert "52998224725" not in str(event) and "91234" not in str(event), "the email says what changed, not to what"


def test_an_invalid_cpf_or_birth_date_is_refused_naming_the_field_and_nothing_changes(clinic):
    patient = clinic.user("patient")
    assert clinic.client.patch("/me/profile", headers=patient["headers"], json={"phone": "11 3333-4444"}).is_success
    for body, field in [
        ({"cpf": "529.982.247-24", "phone": "11 5555-6666"}, "cpf"),
        ({"date_of_birth": "2999-01-01"}, "date_of_birth"),
        ({"phone": "call me"}, "phone"),
        ({"language": "fr"}, "language"),
    ]:
        refused = clinic.client.patch("/me/profile", headers=patient["headers"], json=body)
        assert refused.status_code == 422 and errors(refused) == [field], (body, refused.text)
    removed = clinic.client.patch("/me/profile", headers=patient["headers"], json={"cpf": None})
    assert removed.status_code == 422
    assert removed.json()["errors"] == [{"field": "cpf", "problem": "cpf cannot be removed; send a new value instead"}]
    assert clinic.client.get("/me/profile", headers=patient["headers"]).json()["patient"]["phone"] == "11 3333-4444"


def test_only_patients_have_patient_fields(clinic):
    doctor = clinic.user("doctor")
    refused = clinic.client.patch("/me/profile", headers=doctor["headers"], json={"cpf": CPF})
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"field": "cpf", "problem": PATIENTS_ONLY.format(field="cpf")}]
    renamed = clinic.client.patch("/me/profile", headers=doctor["headers"], json={"full_name": "Dra. Bia"})
    assert renamed.json()["full_name"] == "Dra. Bia" and renamed.json()["patient"] is None


def test_staff_find_a_patient_by_cpf_written_either_way_and_a_cpf_belongs_to_one_patient(clinic):
    ana, bia, staff = clinic.user("patient"), clinic.user("patient"), clinic.user("staff")
    assert clinic.client.patch("/me/profile", headers=ana["headers"], json={"cpf": CPF}).is_success
    found = clinic.client.post("/patients/lookup", headers=staff["headers"], json={"cpf": "52998224725"})
    assert found.status_code == 200 and found.json()["id"] == ana["id"]
    unknown = clinic.client.post("/patients/lookup", headers=staff["headers"], json={"cpf": OTHER_CPF})
    assert status_and_detail(unknown) == (404, NO_PATIENT)
    taken = clinic.client.patch("/me/profile", headers=bia["headers"], json={"cpf": CPF})
    assert status_and_detail(taken) == (409, CPF_TAKEN)
    by_patient = clinic.client.post("/patients/lookup", headers=ana["headers"], json={"cpf": CPF})
    assert status_and_detail(by_patient) == (403, FORBIDDEN)


def test_a_doctor_reads_only_their_patients_profiles(clinic):
    doctor, ana, bia = clinic.user("doctor"), clinic.user("patient"), clinic.user("patient")
    clinic.client.post("/appointments", headers=ana["headers"], json={"doctor_id": doctor["id"], "starts_at": SOON})
    assert clinic.client.get(f"/patients/{ana['id']}/profile", headers=doctor["headers"]).status_code == 200
    refused = clinic.client.get(f"/patients/{bia['id']}/profile", headers=doctor["headers"])
    assert status_and_detail(refused) == (404, NO_PATIENT)
    assert clinic.client.get(f"/patients/{ana['id']}/profile", headers=bia["headers"]).status_code == 403
    assert clinic.client.get(f"/patients/{2**31}/profile", headers=doctor["headers"]).status_code == 422


def test_staff_manage_a_doctors_specialty_crm_and_bio(clinic):
    staff, doctor, other = clinic.user("staff"), clinic.user("doctor"), clinic.user("doctor")
    body = {"specialty": "Cardiologia", "crm_number": "123456", "crm_state": "SP", "bio": "Dra. de coração."}
    assert status_and_detail(
        clinic.client.put(f"/doctors/{doctor['id']}/profile", headers=doctor["headers"], json=body)
    ) == (
        403,
        FORBIDDEN,
    )
    saved = clinic.client.put(f"/doctors/{doctor['id']}/profile", headers=staff["headers"], json=body)
    assert saved.status_code == 200, saved.text
    shown = clinic.client.get(f"/doctors/{doctor['id']}", headers=clinic.user("patient")["headers"]).json()
    assert shown["profile"] == body
    bad_state = clinic.client.put(
        f"/doctors/{other['id']}/profile", headers=staff["headers"], json={**body, "crm_state": "XX"}
    )
    assert bad_state.status_code == 422 and errors(bad_state) == ["crm_state"]
    taken = clinic.client.put(f"/doctors/{other['id']}/profile", headers=staff["headers"], json=body)
    assert status_and_detail(taken) == (409, CRM_TAKEN)
    other_state = clinic.client.put(
        f"/doctors/{other['id']}/profile", headers=staff["headers"], json={**body, "crm_state": "RJ"}
    )
    assert other_state.status_code == 200, "the same number in another state's council is another registration"


def test_a_password_change_needs_the_current_password(clinic):
    patient = clinic.user("patient")
    new = "another long passphrase"
    wrong = clinic.client.post(
        "/me/password", headers=patient["headers"], json={"current_password": "not it at all", "new_password": new}
    )
    assert status_and_detail(wrong) == (400, WRONG_PASSWORD)
    weak = clinic.client.post(
        "/me/password", headers=patient["headers"], json={"current_password": PASSWORD, "new_password": "password1234"}
    )
    assert weak.status_code == 422 and errors(weak) == ["new_password"], "the password policy applies here too"
    changed = clinic.client.post(
        "/me/password", headers=patient["headers"], json={"current_password": PASSWORD, "new_password": new}
    )
    assert changed.status_code == 200, changed.text
    assert clinic.client.get("/me/profile", headers=patient["headers"]).status_code == 401, "older tokens end"
    fresh = {"Authorization": f"Bearer {changed.json()['access_token']}"}
    assert clinic.client.get("/me/profile", headers=fresh).status_code == 200, "the caller carries on with a new one"
    old = clinic.client.post("/auth/login", json={"email": patient["email"], "password": PASSWORD})
    assert status_and_detail(old) == (401, BAD_LOGIN)
    clinic.login(patient["email"], new)
    assert [e["change"] for e in events(clinic, "account.updated")] == ["password"]


def test_wrong_current_passwords_are_throttled_as_failed_sign_ins(clinic):
    """A stolen token cannot guess the password through /me/password faster than through /auth/login: both count
    under the same keys, so five wrong guesses lock both, the right password included, until the window passes."""
    patient = clinic.user("patient")
    body = {"current_password": "not it at all", "new_password": "another long passphrase"}
    for _ in range(5):  # auth.max_login_failures
        assert clinic.client.post("/me/password", headers=patient["headers"], json=body).status_code == 400
    locked = clinic.client.post("/me/password", headers=patient["headers"], json={**body, "current_password": PASSWORD})
    assert status_and_detail(locked) == (429, TOO_MANY_GUESSES) and int(locked.headers["Retry-After"]) > 0
    signing_in = clinic.client.post("/auth/login", json={"email": patient["email"], "password": PASSWORD})
    assert signing_in.status_code == 429, "the sign-in form is locked for this account too"


def test_staff_disable_and_enable_a_patient_and_an_admin_anyone_but_themself(clinic):
    staff, admin, patient = clinic.user("staff"), clinic.user("admin"), clinic.user("patient")
    disabled = clinic.client.post(f"/users/{patient['id']}/disable", headers=staff["headers"])
    assert disabled.status_code == 200 and disabled.json()["disabled_at"]
    assert clinic.client.get("/me/profile", headers=patient["headers"]).status_code == 401, "its token ends at once"
    refused = clinic.client.post("/auth/login", json={"email": patient["email"], "password": PASSWORD})
    assert status_and_detail(refused) == (403, DISABLED)
    assert status_and_detail(clinic.client.post(f"/users/{admin['id']}/disable", headers=staff["headers"])) == (
        403,
        NOT_YOURS_TO_DISABLE,
    )
    assert status_and_detail(clinic.client.post(f"/users/{admin['id']}/disable", headers=admin["headers"])) == (
        409,
        NOT_YOURSELF,
    )
    assert clinic.client.post(f"/users/{staff['id']}/disable", headers=admin["headers"]).status_code == 200
    enabled = clinic.client.post(f"/users/{patient['id']}/enable", headers=admin["headers"])
    assert enabled.json()["disabled_at"] is None
    clinic.login(patient["email"])
    changes = [(e["user_id"], e["change"]) for e in events(clinic, "account.updated")]
    assert changes == [(patient["id"], "disabled"), (staff["id"], "disabled"), (patient["id"], "enabled")]
    with Session(clinic.app.state.engine) as session:
        audited = session.execute(
            select(AuditLog.user_id, AuditLog.action, AuditLog.subject_id).where(AuditLog.action.like("account.%"))
        ).all()
    assert sorted(audited) == sorted(
        [
            (staff["id"], "account.disabled", patient["id"]),
            (admin["id"], "account.disabled", staff["id"]),
            (admin["id"], "account.enabled", patient["id"]),
        ]
    )


def test_choosing_the_password_records_the_consent_to_the_notice_in_force(clinic):
    email = "rita@example.org"
    registered = clinic.client.post("/auth/register", json={"email": email, "full_name": "Rita", "language": "en"})
    assert registered.status_code == 202
    body = {"token": clinic.verification_token(email), "password": PASSWORD, "consent": CONSENT}
    stale = clinic.client.post("/auth/verify", json={**body, "consent": {**CONSENT, "notice_version": "2020-01"}})
    assert stale.status_code == 422 and errors(stale) == ["consent.notice_version"]
    assert "'2020-01' is not the privacy notice in force; allowed: '2026-11'" in stale.text
    no_care = clinic.client.post("/auth/verify", json={**body, "consent": {**CONSENT, "purposes": ["research"]}})
    assert no_care.status_code == 422 and errors(no_care) == ["consent.purposes"]
    missing = clinic.client.post("/auth/verify", json={k: v for k, v in body.items() if k != "consent"})
    assert missing.status_code == 422 and errors(missing) == ["consent"]
    verified = clinic.client.post(
        "/auth/verify", json={**body, "consent": {**CONSENT, "purposes": ["research", "care"]}}
    )
    assert verified.status_code == 200, verified.text
    with Session(clinic.app.state.engine) as session:
        (consent,) = session.scalars(select(Consent).where(Consent.user_id == verified.json()["id"]))
    assert (consent.notice_version, consent.purposes, consent.client_ip) == (
        "2026-11",
        ["care", "research"],
        "testclient",
    )
    (welcome,) = events(clinic, "account.created")
    assert welcome["recipient_language"] == "en", "the language chosen at registration"
    clinic.client.post("/auth/register", json={"email": "tom@example.org", "full_name": "Tom"})
    link = [e for e in events(clinic, "account.verification_requested") if e["recipient_email"] == "tom@example.org"]
    assert link[0]["recipient_language"] == "pt-BR", "the clinic's language unless the patient chose another"
