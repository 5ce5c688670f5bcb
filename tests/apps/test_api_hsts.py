"""HSTS comes from the API: the ALB terminates TLS and redirects HTTP, but cannot add response headers."""

from __future__ import annotations

import pytest
from api_support import running_clinic


@pytest.fixture
def clinic(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        yield clinic


def test_every_response_tells_browsers_to_use_https_only_for_a_year(clinic):
    for response in (
        clinic.client.get("/healthz"),
        clinic.client.get("/no-such-page"),
        clinic.client.post("/auth/login", json={}),
    ):
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains", response.url
