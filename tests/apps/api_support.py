"""Builds an API on a fresh database of the test PostgreSQL and talks to it like a client."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import TypeVar
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from support import free_port

from clinic_api import pagination
from clinic_api.agendas.models import ScheduleBlock
from clinic_api.main import create_app
from clinic_api.migrate import upgrade
from clinic_api.models import OutboxEvent, User, now
from clinic_api.security import hash_password
from clinic_api.settings import Settings

PASSWORD = "correct horse battery"
T = TypeVar("T")
CONSENT = {"notice_version": "2026-11", "purposes": ["care"]}
"""Sign-up's consent to the privacy notice in force (settings.privacy.notice_version's default)."""


def settings_for(postgres, clinic_aws, database_name: str, **overrides) -> Settings:
    """Settings for the test server and moto; an override of a group (`database={"connect_timeout": 5}`) changes only
    the keys it names."""
    values: dict = {
        "environment": "development",
        "database": {
            "host": postgres.host,
            "port": postgres.port,
            "name": database_name,
            "user": "postgres",
            "sslmode": "disable",
            "connect_timeout": 2,
        },
        "aws": {"region": "us-east-1", "endpoint_url": clinic_aws.endpoint},
        "storage": {"bucket": clinic_aws.bucket},
        "queues": {d.replace("-", "_"): url for d, url in clinic_aws.queue_urls.items()},
    }
    for group, value in overrides.items():
        values[group] = {**values[group], **value} if isinstance(values.get(group), dict) else value
    return Settings(**values)


ALL_DAY_ANY_KIND = [
    {"weekday": day, "starts": clock(0), "ends": clock(0), "slot_minutes": 5, "kind": "any"} for day in range(7)
]


@dataclass
class Clinic:
    client: TestClient | httpx.Client
    app: FastAPI

    def visitor(self, signed_in_as: dict | None = None, **options) -> TestClient:
        """Another browser: a client with a cookie jar of its own (`options` as TestClient takes them), signed in to
        the portal as `signed_in_as` (a `user`) when given. Its requests run on the event loop of this clinic's
        lifespan, where the hot pool's connections belong: a TestClient not entered runs each request on a loop of its
        own, and async routes then answer 503 now and then."""
        assert isinstance(self.client, TestClient) and self.client.portal is not None, "a running_clinic's client"
        visitor = TestClient(self.app, **options)
        visitor.portal = self.client.portal
        if signed_in_as:
            page = visitor.get("/portal/sign-in")
            data = {"email": signed_in_as["email"], "password": PASSWORD, "csrf_token": csrf_of(page.text)}
            signed = visitor.post("/portal/sign-in", data=data, follow_redirects=False)
            assert signed.status_code == 303, signed.text
        return visitor

    def user(self, role: str, name: str | None = None, open_all_day: bool = True) -> dict:
        """Creates a user of any role directly (admins create them through the API; tested separately). A doctor
        sees patients every day, all day, in 5-minute slots of either kind (ALL_DAY_ANY_KIND), so that tests not
        about agendas book any time on the 5-minute grid; `open_agenda` replaces that schedule."""
        email = f"{(name or role).replace(' ', '-')}-{uuid.uuid4().hex[:6]}@example.org"
        with Session(self.app.state.engine) as session:
            user = User(
                email=email,
                full_name=(name or role).title(),
                role=role,
                password_hash=hash_password(PASSWORD),
                email_verified_at=now(),
            )
            session.add(user)
            session.flush()
            if role == "doctor" and open_all_day:
                session.add_all(ScheduleBlock(doctor_id=user.id, **block) for block in ALL_DAY_ANY_KIND)
            session.commit()
            user_id = user.id
        return {"id": user_id, "email": email, "headers": self.login(email)}

    def register(self, email: str, full_name: str = "Pat Doe", password: str = PASSWORD) -> dict:
        """A patient registers, and chooses the password with the token of the email the API queued (read from the
        outbox here; tests/apps/test_flow.py follows the real email)."""
        response = self.client.post("/auth/register", json={"email": email, "full_name": full_name})
        assert response.status_code == 202, response.text
        verified = self.client.post(
            "/auth/verify", json={"token": self.verification_token(email), "password": password, "consent": CONSENT}
        )
        assert verified.status_code == 200, verified.text
        return verified.json()

    def verification_token(self, email: str) -> str:
        """The token of the newest verification link queued for `email`."""
        with Session(self.app.state.engine) as session:
            event = session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.event_type == "account.verification_requested")
                .order_by(OutboxEvent.id.desc())
            ).all()
        url = next(e.payload["verify_url"] for e in event if e.payload["recipient_email"] == email.lower())
        return url.split("#token=", 1)[1]

    def open_agenda(self, doctor: dict, blocks: list[dict] | None = None) -> list[dict]:
        """Gives the doctor a weekly schedule (default: every day, 08:00-12:00 in person and 13:00-17:00 by video,
        30-minute slots) and returns the doctor's free slots of the coming week."""
        if blocks is None:
            blocks = [
                {"weekday": day, "starts": starts, "ends": ends, "slot_minutes": 30, "kind": kind}
                for day in range(7)
                for starts, ends, kind in (("08:00", "12:00", "in_person"), ("13:00", "17:00", "video"))
            ]
        staff = self.user("staff")
        put = self.client.put(f"/doctors/{doctor['id']}/schedule", headers=staff["headers"], json={"blocks": blocks})
        assert put.status_code == 200, put.text
        return self.slots(doctor)

    def slots(self, doctor: dict, first: date | None = None, days: int = 7) -> list[dict]:
        """The doctor's free slots from `first` (default: tomorrow in the clinic's zone) for `days` days."""
        zone = ZoneInfo(self.app.state.settings.agenda.time_zone)
        first = first or datetime.now(zone).date() + timedelta(days=1)
        response = self.client.get(
            f"/doctors/{doctor['id']}/slots",
            headers=doctor["headers"],
            params={"from": first.isoformat(), "to": (first + timedelta(days=days - 1)).isoformat()},
        )
        assert response.status_code == 200, response.text
        return response.json()["slots"]

    def login(self, email: str, password: str = PASSWORD) -> dict:
        response = self.client.post("/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


def new_app(postgres, clinic_aws, **overrides) -> FastAPI:
    """The API on a fresh, migrated database; the outbox relay and the reminder loop run only when `outbox` /
    `agenda` ask for them."""
    database = postgres.create_database()
    agenda = {"reminders_enabled": False, **overrides.pop("agenda", {})}
    settings = settings_for(
        postgres, clinic_aws, database, **{"outbox": {"relay_enabled": False}, "agenda": agenda, **overrides}
    )
    app = create_app(settings)
    upgrade(app.state.engine)
    return app


@contextmanager
def running_clinic(postgres, clinic_aws, **overrides) -> Iterator[Clinic]:
    """The API with its lifespan running, as under uvicorn (the hot-path pool is open), through a TestClient."""
    app = new_app(postgres, clinic_aws, **overrides)
    with TestClient(app) as client:
        yield Clinic(client, app)


@contextmanager
def served_clinic(postgres, clinic_aws, **overrides) -> Iterator[Clinic]:
    """The API under a real uvicorn in a thread, its lifespan included, and an HTTP client to it (its `base_url` is
    the server's): for what only real HTTP shows, such as concurrent requests on one event loop and its pools."""
    app = new_app(postgres, clinic_aws, **overrides)
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{config.port}", timeout=30) as client:
            yield Clinic(client, app)
    finally:
        server.should_exit = True
        thread.join(20)


def cursor_at(app: FastAPI, scope: str, user_id: int, position: list) -> str:
    """The cursor the app would sign for list `scope`, caller `user_id`, after `position`: for a test that opens a
    page in the middle of a long list (e.g. the staff's accounts page at the account it made)."""
    return pagination.encode(app.state.settings.auth.jwt_secret.get_secret_value(), scope, user_id, position)


def csrf_of(html: str) -> str:
    """The CSRF token of the page's form (`{{ csrf_field() }}`), for posting it back as a browser would."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def status_and_detail(response) -> tuple[int, object]:
    """A response's status and error detail (None when it has none, as a success), to assert both at once."""
    body = response.json()
    return response.status_code, body.get("detail") if isinstance(body, dict) else None


def future(days: int = 1, hour: int = 10, minute: int = 0) -> str:
    """An appointment instant `days` ahead at hour:minute UTC, as the API takes it."""
    day = datetime.now(UTC) + timedelta(days=days)
    return day.replace(hour=hour, minute=minute, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def at_once(calls: Iterable[Callable[[], T]]) -> list[T]:
    """Runs `calls` concurrently, each in a thread of its own, released together; their results in order."""
    calls = list(calls)
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        start.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))
