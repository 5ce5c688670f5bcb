"""Accounts, tokens, login throttling."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from api_support import PASSWORD, running_clinic, status_and_detail

from clinic_api.routes.accounts import BAD_LOGIN, TOO_MANY
from clinic_api.security import FORBIDDEN, INVALID_TOKEN


@pytest.fixture
def clinic(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        yield clinic


def test_patient_registers_confirms_the_email_logs_in_and_reads_only_themself(clinic):
    created = clinic.register("Ana@Example.org", "Ana")
    assert created["role"] == "patient" and created["email"] == "ana@example.org"
    headers = clinic.login("ana@example.org")
    assert clinic.client.get("/me", headers=headers).json()["email"] == "ana@example.org"


def token(clinic, user, *, role="patient", expires_in=timedelta(minutes=5), secret=None):
    """A token as the API issues it (sub, role, exp; HS256); each argument changes one property of it."""
    key = secret or clinic.app.state.settings.auth.jwt_secret.get_secret_value()
    claims = {"sub": str(user["id"]), "role": role, "exp": datetime.now(UTC) + expires_in}
    return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm='HS256')}"}


def test_expired_forged_or_unknown_role_tokens_are_refused(clinic):
    patient = clinic.user("patient")
    assert clinic.client.get("/me", headers=token(clinic, patient)).status_code == 200, "the unchanged token is valid"
    refused = {
        "expired a second ago": token(clinic, patient, expires_in=timedelta(seconds=-1)),
        "signed with another key": token(clinic, patient, secret="not-the-secret-" * 3),
        "an unknown role": token(clinic, patient, role="root"),
        "not a JWT": {"Authorization": "Bearer garbage"},
        "no token": {},
    }
    for reason, headers in refused.items():
        response = clinic.client.get("/me", headers=headers)
        assert response.status_code == 401, f"token {reason}: accepted, {response.text}"
        assert response.json()["detail"] == INVALID_TOKEN, reason
        assert response.headers["WWW-Authenticate"] == "Bearer", reason


def test_five_failed_logins_lock_the_account_for_this_client_with_retry_after(clinic):
    patient = clinic.user("patient")
    for _ in range(5):
        failed = clinic.client.post("/auth/login", json={"email": patient["email"], "password": "wrong password"})
        assert status_and_detail(failed) == (401, BAD_LOGIN)
    locked = clinic.client.post("/auth/login", json={"email": patient["email"], "password": PASSWORD})
    assert status_and_detail(locked) == (429, TOO_MANY) and int(locked.headers["Retry-After"]) > 0


def test_the_lockout_counts_failures_whatever_the_case_of_the_email(clinic):
    patient = clinic.user("patient")
    local, domain = patient["email"].split("@")
    spellings = [f"{local.upper()}@{domain}", f"{local.title()}@{domain.upper()}", patient["email"]]
    for i in range(5):
        failed = clinic.client.post("/auth/login", json={"email": spellings[i % 3], "password": "wrong password"})
        assert status_and_detail(failed) == (401, BAD_LOGIN), spellings[i % 3]
    locked = clinic.client.post("/auth/login", json={"email": f"{local.capitalize()}@{domain}", "password": PASSWORD})
    assert locked.status_code == 429, "five failures under other spellings of one address lock it out"


def test_only_an_admin_creates_doctors_and_staff(clinic):
    admin, staff = clinic.user("admin"), clinic.user("staff")
    body = {"email": "dr.x@example.org", "password": PASSWORD, "full_name": "Dr X", "role": "doctor"}
    assert status_and_detail(clinic.client.post("/users", json=body, headers=staff["headers"])) == (403, FORBIDDEN)
    created = clinic.client.post("/users", json=body, headers=admin["headers"])
    assert created.status_code == 201 and created.json()["role"] == "doctor"


def test_bad_requests_get_clear_4xx_never_5xx(clinic):
    patient = clinic.user("patient")
    cases = [
        ("post", "/auth/register", {"email": "not-an-email", "password": "x", "full_name": ""}),
        ("post", "/auth/login", {"email": 5}),
        ("post", "/appointments", {"doctor_id": "x", "starts_at": "yesterday"}),
        ("post", "/appointments", {"doctor_id": 999999, "starts_at": "2026-12-01T10:00:00"}),
        ("post", "/appointments", {"doctor_id": 999999, "starts_at": "2026-12-01T10:00:00Z"}),
        ("post", "/appointments/999999/cancel", None),
        ("post", "/exams", {"patient_id": "x"}),
        ("get", "/exams/not-a-number", None),
        ("get", "/exams/999999/download", None),
        ("put", "/exams/999999/result", None),
        ("post", "/users", {"role": "root"}),
    ]
    for method, path, body in cases:
        response = getattr(clinic.client, method)(
            path, headers=patient["headers"], **({"json": body} if body is not None else {})
        )
        assert 400 <= response.status_code < 500, (path, body, response.status_code, response.text)
        assert response.json()["detail"], path
    naive = clinic.client.post(
        "/appointments", headers=patient["headers"], json={"doctor_id": 1, "starts_at": "2026-12-01T10:00:00"}
    )
    assert naive.status_code == 422 and "time zone" in naive.text
    assert (
        clinic.client.post("/auth/register", content=b"{", headers={"content-type": "application/json"}).status_code
        == 422
    )
    time.sleep(0)
