"""Builds an API on a fresh database of the test PostgreSQL and talks to it like a client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from clinic_api.main import create_app
from clinic_api.migrate import upgrade
from clinic_api.models import User
from clinic_api.security import hash_password
from clinic_api.settings import Settings

PASSWORD = "correct horse battery"


def settings_for(postgres, clinic_aws, database: str, **overrides) -> Settings:
    values = {
        "environment": "development",
        "database": {
            "host": postgres.host,
            "port": postgres.port,
            "name": database,
            "user": "postgres",
            "sslmode": "disable",
            "connect_timeout": 2,
        },
        "aws": {"region": "us-east-1", "endpoint_url": clinic_aws.endpoint},
        "storage": {"bucket": clinic_aws.bucket},
        "queues": {d.replace("-", "_"): url for d, url in clinic_aws.queue_urls.items()},
    }
    return Settings(**{**values, **overrides})


@dataclass
class Clinic:
    client: TestClient
    app: FastAPI

    def user(self, role: str, name: str | None = None) -> dict:
        """Creates a user of any role directly (admins create them through the API; tested separately)."""
        email = f"{name or role}-{uuid.uuid4().hex[:6]}@example.org"
        with Session(self.app.state.engine) as session:
            user = User(email=email, full_name=(name or role).title(), role=role, password_hash=hash_password(PASSWORD))
            session.add(user)
            session.commit()
            user_id = user.id
        return {"id": user_id, "email": email, "headers": self.login(email)}

    def login(self, email: str, password: str = PASSWORD) -> dict:
        response = self.client.post("/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


@contextmanager
def running_clinic(postgres, clinic_aws, **overrides) -> Iterator[Clinic]:
    """The API on a fresh database with its lifespan running, as under uvicorn: the hot-path pool is open, and the
    outbox relay runs only when `outbox` asks for it."""
    database = postgres.create_database()
    settings = settings_for(postgres, clinic_aws, database, **{"outbox": {"relay_enabled": False}, **overrides})
    app = create_app(settings)
    upgrade(app.state.engine)
    with TestClient(app) as client:
        yield Clinic(client, app)


def status_and_detail(response) -> tuple[int, object]:
    """A response's status and error detail (None when it has none, as a success), to assert both at once."""
    body = response.json()
    return response.status_code, body.get("detail") if isinstance(body, dict) else None
