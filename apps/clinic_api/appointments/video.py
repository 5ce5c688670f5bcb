"""Video visits: a room token for Jitsi's secure domain, minted only for the appointment's patient and doctor, only
for a video appointment that is not cancelled, only from shortly before its start until its end. The API's route
(routes/telemedicine.py) and the appointment page (pages.py) ask the same functions.

Jitsi (prosody's token_verification, docker-jitsi-meet AUTH_TYPE=jwt) lets a browser into `<base>/<room>?jwt=<token>`
only when the token is signed with the shared secret, `iss` is an accepted issuer, `aud` an accepted audience, `sub`
the XMPP domain, `room` that room, and now is between `nbf` and `exp`. `context.user` is who Jitsi shows;
`affiliation: owner` (prosody's token_affiliation) makes the doctor the room's moderator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from fastapi import HTTPException, status
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_api.appointments.service import Refusal
from clinic_api.errors import existing_id
from clinic_api.models import Appointment, User
from clinic_api.security import Principal
from clinic_api.settings import Settings

NOT_FOUND = "appointment not found"
NOT_VIDEO = "this appointment is not a video visit"
CANCELLED = "this appointment is cancelled"
TOO_EARLY = "the video room opens at {opens}"
ENDED = "this video visit ended at {ends}"
NOT_CONFIGURED = "video visits are not configured on this server"


class RoomToken(BaseModel):
    join_url: str
    """Opens the visit: `<base>/<room>?jwt=<token>`."""
    room: str
    token: str
    expires_at: datetime
    """The appointment's end: Jitsi refuses the token after it."""


def room_name(room_url: str) -> str:
    """The room is the URL's last segment (256 bits from booking); Jitsi's room names are lowercase, so the token
    names it as Jitsi will."""
    return room_url.rstrip("/").rsplit("/", 1)[-1].lower()


def opens_at(settings: Settings, appointment: Appointment) -> datetime:
    return appointment.starts_at - timedelta(minutes=settings.telemedicine.opens_minutes_before)


def closed(settings: Settings, appointment: Appointment, now: datetime) -> Refusal | None:
    """Why the appointment's room does not let its patient and doctor in at `now`, or None when it does."""
    if appointment.kind != "video" or not appointment.room_url:
        return Refusal(status.HTTP_409_CONFLICT, NOT_VIDEO, "not_video")
    if appointment.status == "cancelled":
        return Refusal(status.HTTP_409_CONFLICT, CANCELLED, "cancelled")
    if settings.telemedicine.jwt_secret is None:
        return Refusal(status.HTTP_503_SERVICE_UNAVAILABLE, NOT_CONFIGURED, "not_configured")
    opens = opens_at(settings, appointment)
    if now < opens:
        return Refusal(status.HTTP_403_FORBIDDEN, TOO_EARLY.format(opens=opens.isoformat()), "too_early")
    if now >= appointment.ends_at:
        return Refusal(status.HTTP_403_FORBIDDEN, ENDED.format(ends=appointment.ends_at.isoformat()), "ended")
    return None


def room_token(session: Session, settings: Settings, user: Principal, appointment_id: int) -> RoomToken:
    """The token that lets `user` (the appointment's patient or doctor; the callers refuse other roles) into the
    room; 404 for anyone else's appointment, the `closed` refusal while the room is closed."""
    # A patient or doctor who is not this appointment's learns nothing about it: 404, as for one that does not exist.
    appointment = session.scalar(select(Appointment).where(Appointment.id == existing_id(appointment_id, NOT_FOUND)))
    if appointment is None or user.id not in (appointment.patient_id, appointment.doctor_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    now = datetime.now(UTC)
    if refusal := closed(settings, appointment, now):
        raise refusal
    video = settings.telemedicine
    person = session.get_one(User, user.id)
    doctor = user.id == appointment.doctor_id
    room = room_name(appointment.room_url)  # type: ignore[arg-type]  # closed() refuses without one
    ends = appointment.ends_at
    claims = {
        "iss": video.app_id,
        "aud": video.audience,
        "sub": video.domain,
        "room": room,
        "iat": now,
        "nbf": opens_at(settings, appointment),
        "exp": ends,
        "context": {
            "user": {
                "id": str(person.id),
                "name": person.full_name,
                "moderator": doctor,
                "affiliation": "owner" if doctor else "member",
            }
        },
    }
    secret = video.jwt_secret.get_secret_value()  # type: ignore[union-attr]  # closed() refuses without one
    token = jwt.encode(claims, secret, algorithm="HS256")
    base = settings.telemedicine_base_url.rstrip("/")
    return RoomToken(join_url=f"{base}/{room}?jwt={token}", room=room, token=token, expires_at=ends)
