"""Video visits: the room token route. Who gets one, when, and what it holds: clinic_api.appointments.video."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from clinic_api.appointments.video import RoomToken, room_token
from clinic_api.deps import CurrentUser, SessionDep, SettingsDep, require_role
from clinic_api.errors import responses

router = APIRouter(tags=["telemedicine"])


# Staff and admins see every appointment but never join a visit: their role is refused before anything is read.
@router.post(
    "/appointments/{appointment_id}/video-token",
    response_model=RoomToken,
    dependencies=[Depends(require_role("patient", "doctor"))],
    responses=responses(404, 409),
)
def video_token(appointment_id: int, session: SessionDep, settings: SettingsDep, user: CurrentUser) -> RoomToken:
    return room_token(session, settings, user, appointment_id)
