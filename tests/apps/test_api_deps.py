"""Who may call each route is declared on the route (clinic_api/deps.py), so it can be read off the route table."""

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from clinic_api.agendas import routes as agendas
from clinic_api.deps import current_user, require_role
from clinic_api.main import create_app
from clinic_api.models import User
from clinic_api.routes import accounts, appointments, exams, health, privacy, profiles, telemedicine
from clinic_api.security import FORBIDDEN, issue_token
from clinic_api.settings import Settings

ANYONE, SIGNED_IN = "anyone", "signed in"
EXPECTED = {
    ("POST", "/auth/register"): ANYONE,
    ("POST", "/auth/login"): ANYONE,
    ("POST", "/auth/verify"): ANYONE,
    ("POST", "/auth/password-reset"): ANYONE,
    ("POST", "/auth/password-reset/confirm"): ANYONE,
    ("POST", "/users"): {"admin"},
    ("GET", "/me"): SIGNED_IN,
    ("GET", "/doctors"): SIGNED_IN,
    ("GET", "/users"): {"staff", "admin"},
    ("POST", "/users/{account_id}/disable"): {"staff", "admin"},
    ("POST", "/users/{account_id}/enable"): {"staff", "admin"},
    ("GET", "/me/profile"): SIGNED_IN,
    ("PATCH", "/me/profile"): SIGNED_IN,
    ("POST", "/me/password"): SIGNED_IN,
    ("GET", "/patients/{patient_id}/profile"): {"doctor", "staff", "admin"},
    ("PATCH", "/patients/{patient_id}/profile"): {"staff", "admin"},
    ("POST", "/patients/lookup"): {"staff", "admin"},
    ("GET", "/doctors/{doctor_id}"): SIGNED_IN,
    ("PUT", "/doctors/{doctor_id}/profile"): {"staff", "admin"},
    ("GET", "/privacy/notice"): ANYONE,
    ("GET", "/me/consents"): {"patient"},
    ("POST", "/me/consents"): {"patient"},
    ("GET", "/me/access-log"): {"patient"},
    ("GET", "/me/export"): {"patient"},
    ("POST", "/me/erasure"): {"patient"},
    ("GET", "/audit"): {"staff", "admin"},
    ("POST", "/appointments"): {"patient", "staff", "admin"},
    ("GET", "/appointments"): SIGNED_IN,
    ("POST", "/appointments/{appointment_id}/cancel"): SIGNED_IN,
    ("POST", "/appointments/{appointment_id}/video-token"): {"patient", "doctor"},
    ("POST", "/appointments/{appointment_id}/reschedule"): {"patient", "staff", "admin"},
    ("GET", "/doctors/{doctor_id}/schedule"): SIGNED_IN,
    ("PUT", "/doctors/{doctor_id}/schedule"): {"doctor", "staff", "admin"},
    ("GET", "/doctors/{doctor_id}/exceptions"): {"doctor", "staff", "admin"},
    ("POST", "/doctors/{doctor_id}/exceptions"): {"doctor", "staff", "admin"},
    ("DELETE", "/doctors/{doctor_id}/exceptions/{exception_id}"): {"doctor", "staff", "admin"},
    ("GET", "/doctors/{doctor_id}/slots"): SIGNED_IN,
    ("GET", "/closures"): SIGNED_IN,
    ("POST", "/closures"): {"staff", "admin"},
    ("DELETE", "/closures/{closure_id}"): {"staff", "admin"},
    ("PATCH", "/exams/{exam_id}"): {"staff", "admin"},
    ("POST", "/exams/{exam_id}/cancel"): {"staff", "admin"},
    ("GET", "/exams/{exam_id}/results"): {"staff", "admin"},
    ("GET", "/exams/{exam_id}/audit"): {"staff", "admin"},
    ("POST", "/exams"): {"doctor", "staff", "admin"},
    ("GET", "/exams"): SIGNED_IN,
    ("GET", "/exams/{exam_id}"): SIGNED_IN,
    ("PUT", "/exams/{exam_id}/result"): {"doctor", "staff", "admin"},
    ("POST", "/exams/{exam_id}/ready"): {"doctor", "staff", "admin"},
    ("GET", "/exams/{exam_id}/download"): SIGNED_IN,
    ("GET", "/healthz"): ANYONE,
    ("GET", "/readyz"): ANYONE,
    ("GET", "/metrics"): ANYONE,
}


def who_may_call(route: APIRoute):
    calls = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        calls.add(dependency.call)
        stack += dependency.dependencies
    roles = [call.roles for call in calls if call is not None and hasattr(call, "roles")]
    if roles:
        return set.intersection(*map(set, roles))
    return SIGNED_IN if current_user in calls else ANYONE


def test_every_route_declares_who_may_call_it():
    routes = [
        route
        for module in (accounts, agendas, appointments, exams, health, privacy, profiles, telemedicine)
        for route in module.router.routes
    ]
    table = {
        (method, route.path): who_may_call(route)
        for route in routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert table == EXPECTED


def test_a_role_that_does_not_exist_is_refused_when_the_route_is_declared():
    with pytest.raises(ValueError, match=r"\['nurse'\] is invalid; allowed: \('patient', 'doctor', 'staff', 'admin'\)"):
        require_role("staff", "nurse")


def test_a_caller_without_the_role_is_refused_before_the_body_is_validated():
    settings = Settings(outbox={"relay_enabled": False})
    secret = settings.auth.jwt_secret.get_secret_value()
    patient = {"Authorization": f"Bearer {issue_token(User(id=1, role='patient'), secret, 5)}"}
    client = TestClient(create_app(settings))  # no lifespan and no database: neither is reached
    refused = client.post("/exams", headers=patient, json={"exam_type": ""})
    assert (refused.status_code, refused.json()["detail"]) == (403, FORBIDDEN)
    assert client.post("/exams", json={"exam_type": ""}).status_code == 401
