"""API settings from the environment: prefix CLINIC_, nested groups joined by __ (see README)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from clinic_common.aws import AwsSettings
from clinic_common.database import DatabaseSettings

DEVELOPMENT_JWT_SECRET = "development-only-not-a-secret-0123456789abcdef"
DEVELOPMENT_DATA_KEY = "development-only-data-key-not-a-secret-0123456789"


class StorageSettings(BaseModel):
    bucket: str = "clinic-exams"
    prefix: str = "exams/"
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    download_url_seconds: int = Field(300, ge=30, le=3600)


class QueueSettings(BaseModel):
    account: str = ""
    appointment: str = ""
    exam: str = ""
    exam_result: str = ""
    file: str = ""


class AuthSettings(BaseModel):
    jwt_secret: SecretStr = SecretStr(DEVELOPMENT_JWT_SECRET)
    token_minutes: int = Field(30, ge=1, le=24 * 60)
    max_login_failures: int = Field(5, ge=1)
    """Failed logins for one email from one client address within `lockout_seconds` (clinic_api.throttle)."""
    max_client_login_failures: int = Field(30, ge=1)
    """... from one client address whatever the email (password spraying; a clinic's office shares one address)."""
    max_account_login_failures: int = Field(100, ge=1)
    """... for one email whatever the address (reaching it locks the owner out too, hence higher)."""
    max_client_registrations: int = Field(30, ge=1)
    """Registrations from one client address within `lockout_seconds` (then 429)."""
    max_registration_emails: int = Field(3, ge=1)
    """Registration emails (link or "someone tried") one address gets within `lockout_seconds`."""
    lockout_seconds: int = Field(15 * 60, ge=1)
    verification_hours: int = Field(24, ge=1, le=7 * 24)
    """Life of the emailed link with which a self-registered patient chooses a password and activates the account."""
    unconfirmed_days: int = Field(7, ge=1, le=90)
    """A self-registered account whose link was never followed is deleted after this many days (at the next
    registration): its name and address are not kept for nothing. At least the link's life."""
    reset_minutes: int = Field(30, ge=5, le=24 * 60)
    """Life of the emailed password-reset link (used once: the reset ends it)."""
    max_client_password_resets: int = Field(30, ge=1)
    """Password-reset requests from one client address within `lockout_seconds` (then 429)."""
    max_password_reset_emails: int = Field(3, ge=1)
    """Password-reset emails one address gets within `lockout_seconds` (beyond them the answer stays the same)."""

    @model_validator(mode="after")
    def _links_outlive_nothing(self) -> AuthSettings:
        if self.unconfirmed_days * 24 < self.verification_hours:
            raise ValueError(
                f"auth.unconfirmed_days (CLINIC_AUTH__UNCONFIRMED_DAYS) = {self.unconfirmed_days} is shorter than "
                f"auth.verification_hours = {self.verification_hours}: an account would be deleted while its link is "
                f"valid; allowed: at least {-(-self.verification_hours // 24)} days"
            )
        return self


class TelemedicineSettings(BaseModel):
    """Room tokens for Jitsi's secure domain: what prosody's token_verification checks (the platform sets these to
    match its Jitsi; components/telemedicine.py)."""

    jwt_secret: SecretStr | None = None
    """HS256 key shared with prosody; unset, no room token is minted (503)."""
    app_id: str = "clinic"
    """`iss`: the application prosody accepts tokens from."""
    audience: str = "jitsi"
    """`aud`."""
    domain: str = "meet.jitsi"
    """`sub`: Jitsi's XMPP domain."""
    opens_minutes_before: int = Field(15, ge=0, le=60)
    """How early before the start the room lets its two people in."""


class PrivacySettings(BaseModel):
    data_key: SecretStr = SecretStr(DEVELOPMENT_DATA_KEY)
    """The CPF's encryption key and its lookup (HMAC) key are derived from it: losing it loses every stored CPF."""
    notice_version: str = Field("2026-11", min_length=1, max_length=20, pattern=r"^[A-Za-z0-9._-]+$")
    """The privacy notice in force; sign-up and consent changes must name it."""
    record_retention_years: int = Field(20, ge=20, le=100)
    """How long medical records are kept after their last entry (Lei 13.787/2018 art. 6: 20 years at least)."""


class OutboxSettings(BaseModel):
    relay_enabled: bool = True
    interval_seconds: float = Field(1.0, gt=0)
    batch_size: int = Field(50, ge=1, le=500)


class AppointmentSettings(BaseModel):
    booking_horizon_days: int = Field(365, ge=1, le=5 * 365)
    """How far ahead an appointment may start."""
    max_future_per_patient: int = Field(20, ge=1, le=1000)
    """Upcoming (not cancelled) appointments a patient may hold at once."""


def known_zone(value: str, setting: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{setting} = {value!r} is not a time zone this system knows; allowed: an IANA name such as "
            "America/Sao_Paulo"
        ) from None
    return value


class AgendaSettings(BaseModel):
    time_zone: str = "America/Sao_Paulo"
    """The clinic's IANA zone: weekly schedules are wall-clock hours in it (Brazil has had no DST since 2019), and the
    portal's pages show dates and times in it (one clock for the whole clinic; the stack's apps.timeZone sets it)."""
    patient_cutoff_hours: int = Field(24, ge=0, le=14 * 24)
    """A patient cancels or reschedules only up to this many hours before the start; doctors and staff any time."""
    max_slot_range_days: int = Field(31, ge=1, le=366)
    """The longest from..to range one slot listing may ask for (it is computed on each request)."""
    reminder_hours_before: int = Field(24, ge=1, le=7 * 24)
    reminders_enabled: bool = True
    """Every replica runs the reminder loop; the database claim sends each reminder once."""
    reminder_interval_seconds: float = Field(60.0, gt=0)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value, "agenda.time_zone (CLINIC_AGENDA__TIME_ZONE)")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


class WebSettings(BaseModel):
    """The portal's pages under /portal (clinic_api.web)."""

    secure_cookies: bool = True
    """Cookies only over HTTPS, with the `__Host-` prefix. False only where the portal is served over plain HTTP on
    one's own machine (apps/run_local.py, tests): a browser keeps no Secure cookie from http://."""
    session_idle_minutes: int = Field(30, ge=5, le=24 * 60)
    """A session unused this long ends (the next page asks to sign in again)."""
    session_absolute_minutes: int = Field(12 * 60, ge=15, le=7 * 24 * 60)
    """A session ends this long after sign-in, however busy: a shared reception computer signs out by itself."""

    @model_validator(mode="after")
    def _idle_within_absolute(self) -> WebSettings:
        if self.session_idle_minutes > self.session_absolute_minutes:
            raise ValueError(
                f"web.session_idle_minutes (CLINIC_WEB__SESSION_IDLE_MINUTES) = {self.session_idle_minutes} is longer "
                f"than web.session_absolute_minutes = {self.session_absolute_minutes}; allowed: at most the absolute "
                "timeout"
            )
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLINIC_", env_nested_delimiter="__", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    queues: QueueSettings = Field(default_factory=QueueSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    appointments: AppointmentSettings = Field(default_factory=AppointmentSettings)
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024)
    """Largest request body (JSON) taken; larger ones get 413. The result upload has storage.max_upload_bytes."""
    telemedicine: TelemedicineSettings = Field(default_factory=TelemedicineSettings)
    agenda: AgendaSettings = Field(default_factory=AgendaSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    web: WebSettings = Field(default_factory=WebSettings)
    public_url: str = "http://127.0.0.1:8000"
    """Where patients reach the clinic: the base of every emailed link (verification, password reset)."""
    telemedicine_base_url: str = "https://meet.clinic.example/r"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _real_secret_outside_development(self) -> Settings:
        secret = self.auth.jwt_secret.get_secret_value()
        if self.environment != "development" and (secret == DEVELOPMENT_JWT_SECRET or len(secret) < 32):
            raise ValueError(
                "auth.jwt_secret (CLINIC_AUTH__JWT_SECRET) is the development placeholder or shorter "
                "than 32 characters; allowed outside development: a generated secret of 32+ characters"
            )
        video = self.telemedicine.jwt_secret
        if self.environment != "development" and video is not None and len(video.get_secret_value()) < 32:
            raise ValueError(
                "telemedicine.jwt_secret (CLINIC_TELEMEDICINE__JWT_SECRET) is shorter than 32 characters; allowed "
                "outside development: the platform's generated secret, or unset (no video rooms)"
            )
        key = self.privacy.data_key.get_secret_value()
        if self.environment != "development" and (key == DEVELOPMENT_DATA_KEY or len(key) < 32):
            raise ValueError(
                "privacy.data_key (CLINIC_PRIVACY__DATA_KEY) is the development placeholder or shorter "
                "than 32 characters; allowed outside development: a generated secret of 32+ characters"
            )
        return self

    @model_validator(mode="after")
    def _public_url_patients_can_reach(self) -> Settings:
        # Emailed links are built on it: a loopback or malformed base would send every patient a dead link, and
        # nothing would fail until someone tried one.
        if self.environment != "development" and (problem := unreachable(self.public_url)):
            raise ValueError(
                f"public_url (CLINIC_PUBLIC_URL) {self.public_url!r} {problem}; allowed outside development: the "
                "clinic's own http(s) address, e.g. https://clinic.example.org"
            )
        return self


def unreachable(url: str) -> str | None:
    """Why patients could not open links on `url` (None: they could): not an absolute http(s) URL, or a host that is
    the patient's own machine (localhost, a loopback or unspecified address)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not host:
        return "is not an absolute http(s) URL"
    if parts.query or parts.fragment:
        return "has a query or fragment, which the links' own would collide with"
    if host == "localhost" or host.endswith(".localhost"):
        return "names localhost"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified:
        return "is a loopback or unspecified address"
    return None


@lru_cache
def get_settings() -> Settings:
    return Settings()
