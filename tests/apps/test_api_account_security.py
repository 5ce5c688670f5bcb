"""Accounts resist enumeration and guessing; a disabled, deleted or revoked account's tokens stop working at once."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from api_support import CONSENT, PASSWORD, running_clinic, status_and_detail
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from clinic_api import security
from clinic_api.main import create_app
from clinic_api.models import OutboxEvent, User
from clinic_api.routes.accounts import (
    BAD_LOGIN,
    CHECK_EMAIL,
    DISABLED,
    INVALID_LINK,
    TOO_MANY,
    TOO_MANY_REGISTRATIONS,
)
from clinic_api.security import INVALID_TOKEN, revoke_tokens
from clinic_api.throttle import client_key


@pytest.fixture
def clinic(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        yield clinic


def change(clinic, user_id: int, **values) -> None:
    with Session(clinic.app.state.engine) as session:
        session.execute(update(User).where(User.id == user_id).values(**values))
        session.commit()


def refused_everywhere(clinic, headers) -> dict[str, tuple[int, object]]:
    """What a sync route, the async hot path and a role-restricted route answer to `headers`."""
    return {
        path: status_and_detail(call(path, headers=headers))
        for path, call in {
            "/me": clinic.client.get,
            "/exams": clinic.client.get,
            "/appointments": clinic.client.get,
        }.items()
    }


UNAUTHORIZED = (401, INVALID_TOKEN)


def test_a_disabled_accounts_token_stops_working_on_its_next_request(clinic):
    patient, staff = clinic.user("patient"), clinic.user("staff")
    assert clinic.client.get("/exams", headers=patient["headers"]).status_code == 200
    change(clinic, patient["id"], disabled_at=datetime.now(UTC))
    change(clinic, staff["id"], disabled_at=datetime.now(UTC))
    assert refused_everywhere(clinic, patient["headers"]) == dict.fromkeys(
        ["/me", "/exams", "/appointments"], UNAUTHORIZED
    )
    # A route restricted to staff checks the account too, not only the token's role.
    body = {"patient_id": patient["id"], "exam_type": "Lipid panel"}
    assert status_and_detail(clinic.client.post("/exams", json=body, headers=staff["headers"])) == UNAUTHORIZED
    right = clinic.client.post("/auth/login", json={"email": patient["email"], "password": PASSWORD})
    assert status_and_detail(right) == (403, DISABLED), "said only to whoever knows the password"
    wrong = clinic.client.post("/auth/login", json={"email": patient["email"], "password": "wrong password!"})
    assert status_and_detail(wrong) == (401, BAD_LOGIN)
    change(clinic, patient["id"], disabled_at=None)
    assert clinic.client.get("/me", headers=patient["headers"]).status_code == 200, "enabled again, the token works"


def test_a_deleted_accounts_token_stops_working_at_once(clinic):
    patient = clinic.user("patient")
    with Session(clinic.app.state.engine) as session:
        session.execute(delete(User).where(User.id == patient["id"]))
        session.commit()
    assert refused_everywhere(clinic, patient["headers"]) == dict.fromkeys(
        ["/me", "/exams", "/appointments"], UNAUTHORIZED
    )


def test_revoking_ends_every_token_issued_before_and_new_logins_work(clinic):
    patient = clinic.user("patient")
    with Session(clinic.app.state.engine) as session:
        revoke_tokens(session.get_one(User, patient["id"]))
        session.commit()
    assert refused_everywhere(clinic, patient["headers"]) == dict.fromkeys(
        ["/me", "/exams", "/appointments"], UNAUTHORIZED
    )
    assert clinic.client.get("/exams", headers=clinic.login(patient["email"])).status_code == 200


def test_a_changed_role_ends_the_tokens_that_carry_the_old_one(clinic):
    staff = clinic.user("staff")
    patient = clinic.user("patient")
    change(clinic, staff["id"], role="patient")
    body = {"patient_id": patient["id"], "exam_type": "Lipid panel"}
    assert status_and_detail(clinic.client.post("/exams", json=body, headers=staff["headers"])) == UNAUTHORIZED


def test_a_token_from_before_token_versions_is_version_zero(clinic):
    patient = clinic.user("patient")
    secret = clinic.app.state.settings.auth.jwt_secret.get_secret_value()
    claims = {"sub": str(patient["id"]), "role": "patient", "exp": datetime.now(UTC) + timedelta(minutes=5)}
    old = {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}
    assert clinic.client.get("/me", headers=old).status_code == 200, "tokens issued before the upgrade keep working"
    change(clinic, patient["id"], token_version=1)
    assert status_and_detail(clinic.client.get("/me", headers=old)) == UNAUTHORIZED


def test_the_account_state_migration_keeps_every_existing_account_usable(postgres, clinic_aws):
    """Upgrading a database of the previous revision: the rows stay, not disabled, at the version their tokens carry."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    from clinic_api.migrate import MIGRATIONS

    database = postgres.create_database()
    engine = create_engine(f"postgresql+psycopg://postgres@/{database}?host={postgres.host}&port={postgres.port}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        # No transaction around the upgrade: each migration runs in its own, and 0011 steps out of it.
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
            connection.execute(
                text(
                    "INSERT INTO users (email, full_name, role, password_hash, created_at)"
                    " VALUES ('old@example.org', 'Old', 'patient', 'x', now())"
                )
            )
            connection.commit()
            command.upgrade(config, "head")
            rows = connection.execute(text("SELECT email, disabled_at, token_version FROM users")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [("old@example.org", None, 0)]


def events_for(clinic, email: str) -> list[tuple[str, str]]:
    """(event type, recipient name) of the events queued for `email`, oldest first."""
    with Session(clinic.app.state.engine) as session:
        events = session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
    return [(e.event_type, e.payload["recipient_name"]) for e in events if e.payload["recipient_email"] == email]


def register(clinic, email: str, name: str = "Someone"):
    return clinic.client.post("/auth/register", json={"email": email, "full_name": name})


def test_registration_answers_the_same_whether_or_not_the_email_has_an_account(clinic):
    owner = clinic.user("patient")
    fresh = f"new-{uuid.uuid4().hex[:6]}@example.org"
    answers = {"taken": register(clinic, owner["email"], "Mallory"), "new": register(clinic, fresh, "Nadia")}
    assert {k: (r.status_code, r.json()) for k, r in answers.items()} == dict.fromkeys(
        answers, (202, {"detail": CHECK_EMAIL})
    )
    assert set(answers["taken"].headers) == set(answers["new"].headers) - {"x-request-id"} | {"x-request-id"}
    # The owner is told someone tried (by the owner's own name, not the one the caller typed); the new address gets
    # the link to choose a password.
    assert events_for(clinic, owner["email"]) == [("account.registration_attempted", "Patient")]
    assert events_for(clinic, fresh) == [("account.verification_requested", "Nadia")]
    # Until its link is followed, the new account cannot log in with any password: as an unknown email.
    refused = clinic.client.post("/auth/login", json={"email": fresh, "password": PASSWORD})
    assert status_and_detail(refused) == (401, BAD_LOGIN)


def test_one_address_gets_a_few_registration_emails_per_window_and_one_client_a_few_registrations(postgres, clinic_aws):
    """Nobody can make the clinic send a mailbox an email per request; the answers do not change for it."""
    with running_clinic(postgres, clinic_aws, auth={"max_client_registrations": 8}) as clinic:
        owner, fresh = clinic.user("patient")["email"], f"flood-{uuid.uuid4().hex[:6]}@example.org"
        answers = [register(clinic, email).json() for _ in range(4) for email in (owner, fresh)]
        assert answers == [{"detail": CHECK_EMAIL}] * 8
        assert (
            len(events_for(clinic, owner))
            == len(events_for(clinic, fresh))
            == 3
            == clinic.app.state.settings.auth.max_registration_emails
        )
        refused = register(clinic, f"ninth-{uuid.uuid4().hex[:6]}@example.org")
        assert status_and_detail(refused) == (429, TOO_MANY_REGISTRATIONS) and int(refused.headers["Retry-After"]) > 0
        assert clinic.client.post("/auth/login", json={"email": owner, "password": PASSWORD}).status_code == 200


def test_registering_again_before_confirming_sends_a_new_link_and_either_link_sets_the_password_once(clinic):
    email = f"twice-{uuid.uuid4().hex[:6]}@example.org"
    register(clinic, email, "First")
    first = clinic.verification_token(email)
    again = clinic.client.post("/auth/register", json={"email": email, "full_name": "Mallory", "language": "en"})
    assert again.status_code == 202
    second = clinic.verification_token(email)
    # The second registration may be a stranger's: it sends the owner a new link, under the name they gave, and
    # changes nothing of the account.
    assert events_for(clinic, email) == [("account.verification_requested", "First")] * 2
    used = clinic.client.post("/auth/verify", json={"token": second, "password": PASSWORD, "consent": CONSENT})
    assert used.status_code == 200 and (used.json()["full_name"], used.json()["language"]) == ("First", "pt-BR")
    again = clinic.client.post(
        "/auth/verify", json={"token": first, "password": "another good passphrase", "consent": CONSENT}
    )
    assert status_and_detail(again) == (400, INVALID_LINK), "an account's password is chosen once through a link"
    assert clinic.client.get("/me", headers=clinic.login(email)).json()["email"] == email
    assert [t for t, _ in events_for(clinic, email)][2:] == ["account.created", "patient.registered"], "welcome now"


def test_a_verification_token_and_an_access_token_are_not_interchangeable(clinic):
    email = f"swap-{uuid.uuid4().hex[:6]}@example.org"
    register(clinic, email)
    link_token = clinic.verification_token(email)
    as_access = clinic.client.get("/me", headers={"Authorization": f"Bearer {link_token}"})
    assert status_and_detail(as_access) == UNAUTHORIZED
    access = clinic.user("patient")["headers"]["Authorization"].removeprefix("Bearer ")
    secret = clinic.app.state.settings.auth.jwt_secret.get_secret_value()
    expired = jwt.encode(
        {"sub": "1", "aud": security.VERIFY_EMAIL, "exp": datetime.now(UTC) - timedelta(seconds=1)}, secret
    )
    for token in (access, expired, "garbage"):
        refused = clinic.client.post("/auth/verify", json={"token": token, "password": PASSWORD, "consent": CONSENT})
        assert status_and_detail(refused) == (400, INVALID_LINK), token


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short pass", "at least 12 characters"),
        ("password1234", "is one of the 30,000 most common passwords"),
        ("iloveyou2024!", "is too easy to guess"),
        ("Password1234!", "is too easy to guess"),
        ("my {local} is great", "must not contain the email address or its part before the @"),
        ("{email}", "must not contain the email address or its part before the @"),
    ],
)
def test_weak_passwords_are_refused_with_a_422_naming_the_field_and_the_rule(clinic, password, rule):
    email = f"policy{uuid.uuid4().hex[:6]}@example.org"
    password = password.format(email=email, local=email.split("@")[0])
    register(clinic, email)
    choose = clinic.client.post(
        "/auth/verify", json={"token": clinic.verification_token(email), "password": password, "consent": CONSENT}
    )
    admin, doctor_email = clinic.user("admin"), email.replace("@example.org", "@staff.example.org")
    body = {
        "email": doctor_email,
        "full_name": "Dr X",
        "role": "doctor",
        "password": password.replace(email, doctor_email),
    }
    create = clinic.client.post("/users", json=body, headers=admin["headers"])
    for response in (choose, create):
        assert response.status_code == 422, response.text
        [error] = response.json()["errors"]
        assert error["field"] == "password" and rule in error["problem"], error


def test_every_login_verifies_one_argon2_hash_whether_or_not_the_account_exists(clinic, monkeypatch):
    """The two answers take the same time because both are one argon2 verification of a hash with the same
    parameters (bench/bench_login.py prints the times)."""
    import argon2

    verified: list[str] = []
    real = security._hasher

    class Counting:
        def hash(self, password: str) -> str:
            return real.hash(password)

        def verify(self, password_hash: str, password: str) -> bool:
            verified.append(password_hash)
            return real.verify(password_hash, password)

    monkeypatch.setattr(security, "_hasher", Counting())
    patient = clinic.user("patient")
    unconfirmed = f"unconfirmed-{uuid.uuid4().hex[:6]}@example.org"
    register(clinic, unconfirmed)
    for email in (patient["email"], f"nobody-{uuid.uuid4().hex[:6]}@example.org", unconfirmed):
        verified.clear()
        answer = clinic.client.post("/auth/login", json={"email": email, "password": "wrong but long enough"})
        assert status_and_detail(answer) == (401, BAD_LOGIN), email
        assert len(verified) == 1, f"{email}: {len(verified)} verifications"
    dummy, real = security._dummy_hash(), security.hash_password(PASSWORD)
    assert argon2.extract_parameters(dummy) == argon2.extract_parameters(real)


def test_failed_logins_from_one_address_across_many_emails_are_throttled(postgres, clinic_aws):
    """Password spraying: one password tried against many accounts, each failing once."""
    with running_clinic(postgres, clinic_aws, auth={"max_client_login_failures": 4}) as clinic:
        patient = clinic.user("patient")
        for i in range(4):
            sprayed = clinic.client.post("/auth/login", json={"email": f"u{i}@example.org", "password": PASSWORD[::-1]})
            assert status_and_detail(sprayed) == (401, BAD_LOGIN)
        locked = clinic.client.post("/auth/login", json={"email": patient["email"], "password": PASSWORD})
        assert status_and_detail(locked) == (429, TOO_MANY) and int(locked.headers["Retry-After"]) > 0
        # Another client address is not locked out by it.
        elsewhere = TestClient(clinic.app, client=("203.0.113.7", 50000))
        assert elsewhere.post("/auth/login", json={"email": patient["email"], "password": PASSWORD}).status_code == 200


def test_failures_count_on_every_replica_and_for_an_account_across_addresses(postgres, clinic_aws):
    """Two API processes on one database (two replicas), each client on an address of its own: the account's
    failures add up wherever they happen."""
    with running_clinic(postgres, clinic_aws, auth={"max_account_login_failures": 4}) as clinic:
        patient = clinic.user("patient")
        other_replica = create_app(clinic.app.state.settings)
        with TestClient(other_replica) as other:
            replicas = [clinic.app, other_replica]
            for i in range(4):
                client = TestClient(replicas[i % 2], client=(f"198.51.100.{i}", 50000))
                failed = client.post("/auth/login", json={"email": patient["email"], "password": PASSWORD[::-1]})
                assert status_and_detail(failed) == (401, BAD_LOGIN)
            fresh_address = TestClient(other_replica, client=("192.0.2.99", 50000))
            locked = fresh_address.post("/auth/login", json={"email": patient["email"], "password": PASSWORD})
            assert status_and_detail(locked) == (429, TOO_MANY)
            assert other.get("/healthz").status_code == 200


def test_the_client_address_that_counts():
    assert client_key("203.0.113.7") == "203.0.113.7"
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7", "IPv4 on a dual-stack socket"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("testclient") == "testclient"


def test_behind_the_alb_a_client_cannot_dodge_its_counts_by_writing_x_forwarded_for(clinic):
    """uvicorn as the image runs it (--proxy-headers, FORWARDED_ALLOW_IPS of the Dockerfile), reached from an ALB
    node's private address: the ALB appends the address it saw to whatever X-Forwarded-For the client sent."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    dockerfile = (Path(__file__).resolve().parents[2] / "apps" / "clinic_api" / "Dockerfile").read_text()
    trusted = re.search(r"FORWARDED_ALLOW_IPS=(\S+)", dockerfile).group(1)
    alb = TestClient(ProxyHeadersMiddleware(clinic.app, trusted_hosts=trusted), client=("10.0.3.7", 40000))
    patient = clinic.user("patient")

    def login(password: str, forwarded_for: str):
        return alb.post(
            "/auth/login",
            json={"email": patient["email"], "password": password},
            headers={"X-Forwarded-For": forwarded_for},
        )

    for i in range(5):  # each with another made-up address on the left, as a client may write
        assert login("wrong password!!", f"192.0.2.{i}, 203.0.113.50").status_code == 401
    assert status_and_detail(login(PASSWORD, "192.0.2.99, 203.0.113.50")) == (429, TOO_MANY)
    assert login(PASSWORD, "203.0.113.51").status_code == 200, "another client is not locked out"


def test_the_first_admins_password_is_held_to_the_policy_before_anything_is_stored(monkeypatch, capsys):
    import io

    from clinic_api import create_admin

    monkeypatch.setattr("sys.stdin", io.StringIO("password1234\n"))
    assert create_admin.main(["ada@clinic.example", "Ada"]) == 2
    assert "the admin password is one of the 30,000 most common passwords" in capsys.readouterr().err
