"""A forgotten password is reset through an emailed link that works once, for a short while, and ends every session;
asking for one tells nothing about which addresses have accounts. Unconfirmed registrations do not linger or change."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from api_support import PASSWORD, running_clinic, served_clinic, status_and_detail
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from support import wait_for

from clinic_api.models import OutboxEvent, PatientProfile, User
from clinic_api.routes import accounts
from clinic_api.routes.accounts import (
    BAD_LOGIN,
    CHECK_EMAIL,
    INVALID_RESET_LINK,
    PASSWORD_RESET,
    RESET_EMAIL,
    TOO_MANY_RESETS,
)
from clinic_api.security import INVALID_TOKEN, RESET_PASSWORD, issue_verification_token
from clinic_api.settings import AuthSettings

NEW_PASSWORD = "lantern orchard tidepool"


@pytest.fixture
def clinic(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        yield clinic


def ask(clinic, email: str):
    return clinic.client.post("/auth/password-reset", json={"email": email})


def confirm(clinic, token: str, password: str = NEW_PASSWORD):
    return clinic.client.post("/auth/password-reset/confirm", json={"token": token, "password": password})


def events(clinic, email: str) -> list[OutboxEvent]:
    with Session(clinic.app.state.engine) as session:
        rows = session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
    return [e for e in rows if e.payload["recipient_email"] == email.lower()]


def reset_token(clinic, email: str) -> str:
    """The token of the newest reset link queued for `email`."""
    [*_, event] = [e for e in events(clinic, email) if e.event_type == "account.password_reset_requested"]
    return event.payload["reset_url"].split("#token=", 1)[1]


def change(clinic, user_id: int, **values) -> None:
    with Session(clinic.app.state.engine) as session:
        session.execute(update(User).where(User.id == user_id).values(**values))
        session.commit()


def test_asking_answers_the_same_for_any_address_and_only_an_active_account_gets_a_link(clinic):
    active, disabled = clinic.user("patient"), clinic.user("patient")
    change(clinic, active["id"], language="en")
    change(clinic, disabled["id"], disabled_at=datetime.now(UTC))
    unconfirmed = f"unconfirmed-{uuid.uuid4().hex[:6]}@example.org"
    clinic.client.post("/auth/register", json={"email": unconfirmed, "full_name": "Una"})
    unknown = f"nobody-{uuid.uuid4().hex[:6]}@example.org"
    answers = {email: ask(clinic, email) for email in (active["email"], disabled["email"], unconfirmed, unknown)}
    assert {e: status_and_detail(r) for e, r in answers.items()} == dict.fromkeys(answers, (202, RESET_EMAIL))
    assert len({frozenset(r.headers) for r in answers.values()}) == 1, "the same headers too"

    [link] = events(clinic, active["email"])
    assert link.event_type == "account.password_reset_requested"
    assert link.payload["recipient_language"] == "en"
    assert link.payload["expires_minutes"] == 30
    assert link.payload["reset_url"].startswith("http://127.0.0.1:8000/portal/reset-password#token=")
    assert events(clinic, disabled["email"]) == [] and events(clinic, unknown) == []
    # Whoever never chose a password is sent a new confirmation link: choosing it there comes with the notice.
    assert [e.event_type for e in events(clinic, unconfirmed)] == ["account.verification_requested"] * 2
    assert (
        events(clinic, unconfirmed)[-1].payload["verify_url"].startswith("http://127.0.0.1:8000/portal/verify-email#")
    )


def test_the_answer_leaves_before_the_address_is_looked_up(postgres, clinic_aws, monkeypatch):
    """Same answer, same time: whatever an account costs to look up and email is spent after the answer has gone."""
    release, looked_up = threading.Event(), threading.Event()
    real = accounts.send_reset_link

    def held(*args):
        release.wait(20)
        real(*args)
        looked_up.set()

    monkeypatch.setattr(accounts, "send_reset_link", held)
    with served_clinic(postgres, clinic_aws) as clinic:
        patient = clinic.user("patient")
        answer = ask(clinic, patient["email"])
        assert status_and_detail(answer) == (202, RESET_EMAIL)
        assert not looked_up.is_set() and events(clinic, patient["email"]) == [], "answered before the lookup"
        release.set()
        wait_for(looked_up.is_set, 10, "the reset link")
        assert [e.event_type for e in events(clinic, patient["email"])] == ["account.password_reset_requested"]


def test_a_link_sets_a_new_password_once_and_ends_every_session_and_older_link(clinic):
    patient = clinic.user("patient")
    ask(clinic, patient["email"])
    older = reset_token(clinic, patient["email"])
    ask(clinic, patient["email"])
    newer = reset_token(clinic, patient["email"])
    assert clinic.client.get("/me", headers=patient["headers"]).status_code == 200

    assert status_and_detail(confirm(clinic, newer)) == (200, PASSWORD_RESET)
    done = events(clinic, patient["email"])[-1]
    assert (done.event_type, done.payload["change"]) == ("account.updated", "password"), "the owner is told"
    assert status_and_detail(clinic.client.get("/me", headers=patient["headers"])) == (401, INVALID_TOKEN)
    old = clinic.client.post("/auth/login", json={"email": patient["email"], "password": PASSWORD})
    assert status_and_detail(old) == (401, BAD_LOGIN)
    assert clinic.client.get("/me", headers=clinic.login(patient["email"], NEW_PASSWORD)).status_code == 200
    for token in (newer, older):
        again = confirm(clinic, token, "another lantern orchard")
        assert status_and_detail(again) == (400, INVALID_RESET_LINK), "used, or sent before the reset"


def test_a_weak_password_is_refused_naming_the_field_and_the_link_still_works(clinic):
    patient = clinic.user("patient")
    ask(clinic, patient["email"])
    token = reset_token(clinic, patient["email"])
    for weak, rule in (("password1234", "most common"), (patient["email"], "must not contain the email")):
        refused = confirm(clinic, token, weak)
        assert refused.status_code == 422
        [error] = refused.json()["errors"]
        assert error["field"] == "password" and rule in error["problem"], error
    assert confirm(clinic, token).status_code == 200


def test_an_expired_altered_or_foreign_token_is_refused(clinic):
    patient = clinic.user("patient")
    secret = clinic.app.state.settings.auth.jwt_secret.get_secret_value()
    claims = {"sub": str(patient["id"]), "aud": RESET_PASSWORD, "ver": 0}
    expired = jwt.encode({**claims, "exp": datetime.now(UTC) - timedelta(seconds=1)}, secret)
    forged = jwt.encode({**claims, "exp": datetime.now(UTC) + timedelta(minutes=5)}, "not the clinic's secret" * 2)
    with Session(clinic.app.state.engine) as session:
        verification = issue_verification_token(session.get_one(User, patient["id"]), secret, 1)
    access = patient["headers"]["Authorization"].removeprefix("Bearer ")
    for token in (expired, forged, verification, access, "garbage"):
        assert status_and_detail(confirm(clinic, token)) == (400, INVALID_RESET_LINK), token
    assert clinic.client.get("/me", headers=clinic.login(patient["email"])).status_code == 200, "password unchanged"


def test_a_link_stops_working_once_the_account_is_disabled_or_its_password_changed(clinic):
    disabled, changed = clinic.user("patient"), clinic.user("patient")
    for account in (disabled, changed):
        ask(clinic, account["email"])
    change(clinic, disabled["id"], disabled_at=datetime.now(UTC))
    body = {"current_password": PASSWORD, "new_password": "quartz meadow lighthouse"}
    assert clinic.client.post("/me/password", json=body, headers=changed["headers"]).status_code == 200
    for account in (disabled, changed):
        assert status_and_detail(confirm(clinic, reset_token(clinic, account["email"]))) == (400, INVALID_RESET_LINK)


def test_one_address_gets_a_few_links_per_window_and_one_client_a_few_requests(postgres, clinic_aws):
    auth = {"max_password_reset_emails": 2, "max_client_password_resets": 5}
    with running_clinic(postgres, clinic_aws, auth=auth) as clinic:
        patient = clinic.user("patient")
        answers = [status_and_detail(ask(clinic, patient["email"])) for _ in range(5)]
        assert answers == [(202, RESET_EMAIL)] * 5
        assert len(events(clinic, patient["email"])) == 2
        refused = ask(clinic, patient["email"])
        assert status_and_detail(refused) == (429, TOO_MANY_RESETS) and int(refused.headers["Retry-After"]) > 0


def test_the_reset_routes_document_their_errors(clinic):
    paths = clinic.app.openapi()["paths"]
    assert {"413", "422", "429", "503"} <= set(paths["/auth/password-reset"]["post"]["responses"])
    assert {"400", "413", "422", "503"} <= set(paths["/auth/password-reset/confirm"]["post"]["responses"])


def register(clinic, email: str, name: str):
    answer = clinic.client.post("/auth/register", json={"email": email, "full_name": name})
    assert (answer.status_code, answer.json()) == (202, {"detail": CHECK_EMAIL})


def test_unconfirmed_accounts_past_the_bound_go_at_the_next_registration_and_nothing_confirmed_does(clinic):
    def fresh(label: str) -> str:
        return f"{label}-{uuid.uuid4().hex[:6]}@example.org"

    stale, recent, with_profile = fresh("stale"), fresh("recent"), fresh("profiled")
    for email in (stale, recent, with_profile):
        register(clinic, email, "Early Bird")
    confirmed = clinic.user("patient")
    eight_days_ago = datetime.now(UTC) - timedelta(days=8)
    with Session(clinic.app.state.engine) as session:
        ids = dict(session.execute(select(User.email, User.id)).tuples().all())
        session.execute(update(User).where(User.email.in_([stale, with_profile])).values(created_at=eight_days_ago))
        session.execute(update(User).where(User.email == recent).values(created_at=datetime.now(UTC) - timedelta(6)))
        # Confirmed long ago, and one confirmed a year after registering: neither is ever purged.
        session.execute(
            update(User).where(User.id == confirmed["id"]).values(created_at=eight_days_ago - timedelta(400))
        )
        session.add(PatientProfile(user_id=ids[with_profile], phone="+55 11 99999-0000"))  # staff filled it in
        session.commit()

    register(clinic, fresh("someone"), "Someone Else")
    with Session(clinic.app.state.engine) as session:
        left = set(session.scalars(select(User.email)))
    assert stale not in left
    assert {recent, with_profile, confirmed["email"]} <= left
    assert clinic.client.get("/me", headers=clinic.login(confirmed["email"])).status_code == 200

    # The address is free again: registering it makes a new account, under the name given now.
    register(clinic, stale, "Rightful Owner")
    [*_, link] = events(clinic, stale)
    assert link.payload["recipient_name"] == "Rightful Owner"
    assert link.payload["user_id"] != ids[stale]


def test_the_purge_bound_outlives_the_verification_link():
    assert AuthSettings(verification_hours=72, unconfirmed_days=3).unconfirmed_days == 3
    with pytest.raises(ValidationError, match=r"auth.unconfirmed_days .* = 2 .* allowed: at least 3 days"):
        AuthSettings(verification_hours=72, unconfirmed_days=2)
