"""Video visits: a room token for Jitsi's secure domain, minted only for the appointment's patient and doctor, only
for a video appointment that is not cancelled, only from shortly before its start until its end.

Jitsi (prosody's token_verification, docker-jitsi-meet AUTH_TYPE=jwt) lets a browser into `<base>/<room>?jwt=<token>`
only when the token is signed with the shared secret, `iss` is an accepted issuer, `aud` an accepted audience, `sub`
the XMPP domain, `room` that room, and now is between `nbf` and `exp`. `context.user` is who Jitsi shows;
`affiliation: owner` (prosody's token_affiliation) makes the doctor the room's moderator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel
from sqlalchemy import select

from clinic_api.deps import CurrentUser, SessionDep, SettingsDep, require_role
from clinic_api.errors import existing_id, responses
from clinic_api.models import Appointment, User

router = APIRouter(tags=["telemedicine"])
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


# Staff and admins see every appointment but never join a visit: their role is refused before anything is read.
@router.post(
    "/appointments/{appointment_id}/video-token",
    response_model=RoomToken,
    dependencies=[Depends(require_role("patient", "doctor"))],
    responses=responses(404, 409),
)
def video_token(appointment_id: int, session: SessionDep, settings: SettingsDep, user: CurrentUser) -> RoomToken:
    video = settings.telemedicine
    # A patient or doctor who is not this appointment's learns nothing about it: 404, as for one that does not exist.
    appointment = session.scalar(select(Appointment).where(Appointment.id == existing_id(appointment_id, NOT_FOUND)))
    if appointment is None or user.id not in (appointment.patient_id, appointment.doctor_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    if appointment.kind != "video" or not appointment.room_url:
        raise HTTPException(status.HTTP_409_CONFLICT, NOT_VIDEO)
    if appointment.status == "cancelled":
        raise HTTPException(status.HTTP_409_CONFLICT, CANCELLED)
    if video.jwt_secret is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NOT_CONFIGURED)
    now = datetime.now(UTC)
    opens = appointment.starts_at - timedelta(minutes=video.opens_minutes_before)
    ends = appointment.ends_at
    if now < opens:
        raise HTTPException(status.HTTP_403_FORBIDDEN, TOO_EARLY.format(opens=opens.isoformat()))
    if now >= ends:
        raise HTTPException(status.HTTP_403_FORBIDDEN, ENDED.format(ends=ends.isoformat()))

    person = session.get_one(User, user.id)
    doctor = user.id == appointment.doctor_id
    room = room_name(appointment.room_url)
    claims = {
        "iss": video.app_id,
        "aud": video.audience,
        "sub": video.domain,
        "room": room,
        "iat": now,
        "nbf": opens,
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
    token = jwt.encode(claims, video.jwt_secret.get_secret_value(), algorithm="HS256")
    base = settings.telemedicine_base_url.rstrip("/")
    return RoomToken(join_url=f"{base}/{room}?jwt={token}", room=room, token=token, expires_at=ends)
