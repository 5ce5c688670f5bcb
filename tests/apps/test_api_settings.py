"""The API's own settings refuse, outside development, what would fail only later and in patients' hands: placeholder
or short secrets, and a public address nobody outside the pod can open."""

from __future__ import annotations

from typing import Any

import pytest

from clinic_api.settings import DEVELOPMENT_DATA_KEY, DEVELOPMENT_JWT_SECRET, Settings

PRODUCTION: dict[str, Any] = {
    "environment": "production",
    "auth": {"jwt_secret": "j" * 40},
    "privacy": {"data_key": "k" * 40},
    "public_url": "https://clinic.example.org",
}


def test_production_takes_real_secrets_and_the_clinics_address():
    settings = Settings(**PRODUCTION)
    assert settings.telemedicine.jwt_secret is None, "no video rooms unless the platform gives a room secret"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"auth": {"jwt_secret": DEVELOPMENT_JWT_SECRET}}, r"auth.jwt_secret \(CLINIC_AUTH__JWT_SECRET\) is the dev"),
        ({"auth": {"jwt_secret": "j" * 31}}, r"auth.jwt_secret \(CLINIC_AUTH__JWT_SECRET\) .* shorter than 32"),
        ({"privacy": {"data_key": DEVELOPMENT_DATA_KEY}}, r"privacy.data_key \(CLINIC_PRIVACY__DATA_KEY\) is the dev"),
        ({"telemedicine": {"jwt_secret": "short"}}, r"telemedicine.jwt_secret \(CLINIC_TELEMEDICINE__JWT_SECRET\)"),
    ],
)
def test_production_refuses_a_placeholder_or_short_secret_naming_it(change: dict, message: str):
    with pytest.raises(ValueError, match=message):
        Settings(**{**PRODUCTION, **change})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:8000", "is a loopback or unspecified address"),
        ("http://localhost:8000", "names localhost"),
        ("https://portal.localhost", "names localhost"),
        ("http://[::1]/", "is a loopback or unspecified address"),
        ("http://0.0.0.0", "is a loopback or unspecified address"),
        ("clinic.example.org", "is not an absolute http(s) URL"),
        ("ftp://clinic.example.org", "is not an absolute http(s) URL"),
        ("https://clinic.example.org/?next=1", "has a query or fragment"),
        ("http://[::1", "is not a URL"),
    ],
)
def test_production_refuses_a_public_url_patients_cannot_open_naming_it(url: str, problem: str):
    with pytest.raises(ValueError, match=r"public_url \(CLINIC_PUBLIC_URL\)") as refused:
        Settings(**{**PRODUCTION, "public_url": url})
    assert problem in str(refused.value)
    assert repr(url) in str(refused.value), "the message shows the value that was refused"


@pytest.mark.parametrize(
    "url", ["http://dev.clinic.example.org/", "https://10.0.0.7", "https://clinic.example.org/app"]
)
def test_production_takes_any_address_of_the_clinics_own(url: str):
    assert Settings(**{**PRODUCTION, "public_url": url}).public_url == url


def test_development_keeps_its_loopback_default():
    assert Settings(environment="development").public_url == "http://127.0.0.1:8000"
