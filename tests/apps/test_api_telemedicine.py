"""Video room tokens on the real PostgreSQL: only the appointment's patient and doctor, only a video visit that is
not cancelled, only from 15 minutes before its start until its end; the claims are what Jitsi's token
verification checks (docker-jitsi-meet AUTH_TYPE=jwt, JWT_APP_ID / JWT_ACCEPTED_ISSUERS / JWT_ACCEPTED_AUDIENCES)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from api_support import running_clinic, status_and_detail
from sqlalchemy import update
from sqlalchemy.orm import Session

from clinic_api.appointments.video import CANCELLED, NOT_CONFIGURED, NOT_FOUND, NOT_VIDEO
from clinic_api.models import Appointment
from clinic_api.security import FORBIDDEN

SECRET = "the-platforms-generated-jitsi-secret-0123456789"
BASE = "https://meet.clinic.example.org"


@pytest.fixture
def clinic(postgres, clinic_aws):
    overrides = {"telemedicine_base_url": BASE, "telemedicine": {"jwt_secret": SECRET}}
    with running_clinic(postgres, clinic_aws, **overrides) as clinic:
        yield clinic


def next_slot(moment: datetime) -> datetime:
    """The first start on the test doctors' 5-minute grid at or after `moment` (api_support.ALL_DAY_ANY_KIND)."""
    minute = moment.replace(second=0, microsecond=0)
    if minute < moment:
        minute += timedelta(minutes=1)
    return minute + timedelta(minutes=-minute.minute % 5)


def book(clinic, patient, doctor, *, starts_in: timedelta, kind: str = "video", minutes: int = 30) -> dict:
    starts_at = next_slot(datetime.now(UTC) + starts_in)
    response = clinic.client.post(
        "/appointments",
        json={
            "doctor_id": doctor["id"],
            "starts_at": starts_at.isoformat(),
            "kind": kind,
            "duration_minutes": minutes,
        },
        headers=patient["headers"],
    )
    assert response.status_code == 201, response.text
    return response.json()


def move(clinic, appointment: dict, starts_in: timedelta, minutes: int = 30) -> None:
    """Put an appointment elsewhere in time, keeping its length (booking refuses the past)."""
    starts_at = datetime.now(UTC) + starts_in
    with Session(clinic.app.state.engine) as session:
        session.execute(
            update(Appointment)
            .where(Appointment.id == appointment["id"])
            .values(starts_at=starts_at, ends_at=starts_at + timedelta(minutes=minutes))
        )
        session.commit()


def mint(clinic, appointment: dict, user: dict):
    return clinic.client.post(f"/appointments/{appointment['id']}/video-token", headers=user["headers"])


def claims(token: str) -> dict:
    return jwt.decode(token, SECRET, algorithms=["HS256"], audience="jitsi", issuer="clinic")


def test_patient_and_doctor_get_a_token_jitsi_accepts_for_that_room_only_the_doctor_moderates(clinic):
    patient, doctor = clinic.user("patient", "ana"), clinic.user("doctor", "bruno")
    appointment = book(clinic, patient, doctor, starts_in=timedelta(minutes=10), minutes=45)
    assert appointment["room_url"].startswith(f"{BASE}/"), "the room is on the platform's real host"
    room = appointment["room_url"].rsplit("/", 1)[1].lower()
    starts_at, ends_at = (datetime.fromisoformat(appointment[k]) for k in ("starts_at", "ends_at"))
    assert ends_at - starts_at == timedelta(minutes=45)

    for user, name, moderator in ((patient, "Ana", False), (doctor, "Bruno", True)):
        response = mint(clinic, appointment, user)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["room"] == room and len(room) >= 43
        assert body["join_url"] == f"{BASE}/{room}?jwt={body['token']}"
        token = claims(body["token"])
        assert (token["iss"], token["aud"], token["sub"], token["room"]) == ("clinic", "jitsi", "meet.jitsi", room)
        assert token["nbf"] == int((starts_at - timedelta(minutes=15)).timestamp())
        assert token["exp"] == int(ends_at.timestamp()), "the token lasts until the appointment's own end"
        assert datetime.fromisoformat(body["expires_at"]) == ends_at
        person = token["context"]["user"]
        assert (person["id"], person["name"]) == (str(user["id"]), name)
        assert person["moderator"] is moderator
        assert person["affiliation"] == ("owner" if moderator else "member")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(body["token"], "another-secret-" * 3, algorithms=["HS256"], audience="jitsi")


def test_everyone_else_gets_404_or_403_and_learns_nothing(clinic):
    patient, doctor = clinic.user("patient"), clinic.user("doctor")
    appointment = book(clinic, patient, doctor, starts_in=timedelta(minutes=5))
    other_patient, other_doctor = clinic.user("patient", "eve"), clinic.user("doctor", "mallory")
    for outsider in (other_patient, other_doctor):
        assert status_and_detail(mint(clinic, appointment, outsider)) == (404, NOT_FOUND)
    for role in ("staff", "admin"):
        assert status_and_detail(mint(clinic, appointment, clinic.user(role))) == (403, FORBIDDEN)
    assert status_and_detail(mint(clinic, {"id": appointment["id"] + 1000}, patient)) == (404, NOT_FOUND)
    anonymous = clinic.client.post(f"/appointments/{appointment['id']}/video-token")
    assert anonymous.status_code == 401


def test_only_from_15_minutes_before_the_start_until_the_end(clinic):
    patient, doctor = clinic.user("patient"), clinic.user("doctor")
    appointment = book(clinic, patient, doctor, starts_in=timedelta(hours=2))
    cases = {
        timedelta(minutes=16): 403,  # a minute before the room opens
        timedelta(minutes=14): 200,
        timedelta(minutes=-29): 200,  # a minute before the end of a 30-minute appointment
        timedelta(minutes=-31): 403,
    }
    for starts_in, expected in cases.items():
        move(clinic, appointment, starts_in)
        status_code, detail = status_and_detail(mint(clinic, appointment, patient))
        assert status_code == expected, (starts_in, detail)
        if expected == 403:
            assert "opens at" in detail if starts_in > timedelta(0) else "ended at" in detail


def test_cancelled_and_in_person_appointments_get_no_token(clinic):
    patient, doctor = clinic.user("patient"), clinic.user("doctor")
    in_person = book(clinic, patient, clinic.user("doctor"), starts_in=timedelta(minutes=5), kind="in_person")
    assert status_and_detail(mint(clinic, in_person, patient)) == (409, NOT_VIDEO)
    video = book(clinic, patient, doctor, starts_in=timedelta(minutes=6))
    assert mint(clinic, video, doctor).status_code == 200
    # In 6 minutes: past the patient's cancellation cutoff, so the doctor cancels, with a reason.
    cancel = clinic.client.post(
        f"/appointments/{video['id']}/cancel", headers=doctor["headers"], json={"reason": "Ill"}
    )
    assert cancel.status_code == 200
    for user in (patient, doctor):
        assert status_and_detail(mint(clinic, video, user)) == (409, CANCELLED)


def test_without_the_shared_secret_no_token_is_minted(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        patient, doctor = clinic.user("patient"), clinic.user("doctor")
        appointment = book(clinic, patient, doctor, starts_in=timedelta(minutes=5))
        assert status_and_detail(mint(clinic, appointment, patient)) == (503, NOT_CONFIGURED)
