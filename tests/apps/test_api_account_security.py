"""Accounts resist enumeration and guessing; a disabled, deleted or revoked account's tokens stop working at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from api_support import PASSWORD, running_clinic, status_and_detail
from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from clinic_api.models import User
from clinic_api.routes.accounts import BAD_LOGIN, DISABLED
from clinic_api.security import INVALID_TOKEN, revoke_tokens


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
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
            connection.execute(
                text(
                    "INSERT INTO users (email, full_name, role, password_hash, created_at)"
                    " VALUES ('old@example.org', 'Old', 'patient', 'x', now())"
                )
            )
            command.upgrade(config, "head")
            rows = connection.execute(text("SELECT email, disabled_at, token_version FROM users")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [("old@example.org", None, 0)]
