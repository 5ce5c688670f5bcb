"""Bodies of the agenda endpoints. Instants go out in UTC ("...Z"), the API's one form; wall-clock hours and days
are the clinic's (`time_zone` in the bodies that carry them)."""

from __future__ import annotations

from datetime import date, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from clinic_api.schemas import Text, UtcDatetime


class BlockIn(BaseModel):
    weekday: int = Field(ge=0, le=6, description="0 = Monday ... 6 = Sunday")
    starts: time = Field(description="wall-clock time in the clinic's zone, HH:MM")
    ends: time = Field(
        description="wall-clock time in the clinic's zone, HH:MM, after `starts` on the same day (00:00: midnight at "
        "its end)"
    )
    slot_minutes: int = Field(ge=5, le=240)
    kind: Literal["in_person", "video", "any"] = Field(
        "in_person", description="`any`: the patient chooses in person or video when booking"
    )

    @field_validator("starts", "ends")
    @classmethod
    def _wall_clock(cls, value: time) -> time:
        if value.tzinfo is not None or value.second or value.microsecond:
            raise ValueError("must be a wall-clock HH:MM without seconds or offset (the clinic's zone applies)")
        return value


class BlockOut(BlockIn):
    model_config = ConfigDict(from_attributes=True)


class WeeklySchedule(BaseModel):
    """The whole weekly schedule: a PUT replaces it at once."""

    blocks: list[BlockIn] = Field(max_length=100)


class WeeklyScheduleOut(BaseModel):
    doctor_id: int
    time_zone: str
    blocks: list[BlockOut]


class NewException(BaseModel):
    """Either whole days (`first_day`..`last_day` in the clinic's zone, e.g. a holiday or leave), or an exact span
    (`starts_at`..`ends_at`, e.g. an afternoon)."""

    reason: Text = Field(min_length=1, max_length=200)
    first_day: date | None = None
    last_day: date | None = None
    starts_at: UtcDatetime | None = None
    ends_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _one_form(self) -> NewException:
        days, span = (self.first_day, self.last_day), (self.starts_at, self.ends_at)
        if all(v is None for v in span) and all(v is not None for v in days):
            if self.last_day < self.first_day:  # type: ignore[operator]
                raise ValueError("last_day is before first_day")
            return self
        if all(v is None for v in days) and all(v is not None for v in span):
            if self.ends_at <= self.starts_at:  # type: ignore[operator]
                raise ValueError("ends_at is not after starts_at")
            return self
        raise ValueError("give either first_day and last_day, or starts_at and ends_at")


class ExceptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    doctor_id: int | None = Field(description="None: the whole clinic is closed")
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    reason: str


class NewExceptionOut(ExceptionOut):
    affected_appointment_ids: list[int] = Field(
        description="confirmed appointments inside the exception: they stay booked until someone cancels them"
    )


class SlotOut(BaseModel):
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    kind: Literal["in_person", "video", "any"]


class SlotList(BaseModel):
    doctor_id: int
    time_zone: str
    from_day: date = Field(serialization_alias="from")
    to_day: date = Field(serialization_alias="to")
    slots: list[SlotOut]
