"""The portal's core without a browser: headers, cookies, CSRF, sessions and their timeouts, error pages, forms."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from api_support import PASSWORD, csrf_of, running_clinic
from fastapi import Request
from sqlalchemy import update
from sqlalchemy.orm import Session

from clinic_api.main import PAGE_CSP
from clinic_api.models import User, now
from clinic_api.web.models import WebSession


@pytest.fixture(scope="module")
def portal(postgres, shared_clinic_aws):
    with running_clinic(postgres, shared_clinic_aws, web={"secure_cookies": False}) as clinic:
        yield clinic


def sign_in(client, email: str, password: str = PASSWORD):
    page = client.get("/portal/sign-in")
    return client.post(
        "/portal/sign-in",
        data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )


def test_sign_in_page_is_html_with_csp_and_security_headers(portal):
    page = portal.client.get("/portal/sign-in")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == PAGE_CSP
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text and " style=" not in page.text


def test_static_files_are_fingerprinted_immutable_and_htmx_is_the_pinned_release(portal):
    from clinic_api.web.static import HTMX_SHA256, STATIC_DIR, static_url

    assert hashlib.sha256((STATIC_DIR / "htmx.min.js").read_bytes()).hexdigest() == HTMX_SHA256
    url = static_url("htmx.min.js")
    assert re.fullmatch(r"/portal/static/htmx\.min\.[0-9a-f]{12}\.js", url)
    plain = portal.client.get(url, headers={"Accept-Encoding": "identity"})
    assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert hashlib.sha256(plain.content).hexdigest() == HTMX_SHA256
    zipped = portal.client.get(url, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.content == plain.content
    assert portal.client.get("/portal/static/htmx.min.js").status_code == 404  # only fingerprinted names


def test_root_and_portal_home_lead_to_sign_in_then_to_the_roles_home(portal):
    assert portal.client.get("/", follow_redirects=False).headers["location"] == "/portal/"
    home = portal.client.get("/portal/", follow_redirects=False)
    assert (home.status_code, home.headers["location"]) == (303, "/portal/sign-in?next=/portal/")
    for role, path in [
        ("patient", "/portal/appointments"),
        ("doctor", "/portal/agenda"),
        ("admin", "/portal/staff/doctors"),
    ]:
        client = portal.visitor()
        assert sign_in(client, portal.user(role)["email"]).headers["location"] == "/portal/"
        assert client.get("/portal/", follow_redirects=False).headers["location"] == path


def session_cookie(response) -> str:
    [cookie] = [c for c in response.headers.get_list("set-cookie") if c.startswith("session=")]
    return cookie


def test_sign_in_sets_an_httponly_lax_session_cookie_whose_id_is_stored_only_hashed(portal):
    user = portal.user("patient")
    client = portal.visitor()
    signed_in = sign_in(client, user["email"])
    assert signed_in.status_code == 303
    cookie = session_cookie(signed_in)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie and "Secure" not in cookie
    session_id = cookie.split(";")[0].split("=", 1)[1]
    with Session(portal.app.state.engine) as db:
        hashes = [row.id_hash for row in db.query(WebSession).filter_by(user_id=user["id"])]
    assert hashes == [hashlib.sha256(session_id.encode()).hexdigest()]
    # Signing in again rotates: a new id, the browser's old session gone.
    again = sign_in(client, user["email"])
    assert session_cookie(again).split(";")[0] != cookie.split(";")[0]
    with Session(portal.app.state.engine) as db:
        assert db.query(WebSession).filter_by(user_id=user["id"]).count() == 1


def test_secure_cookies_by_default_with_the_host_prefix(postgres, shared_clinic_aws):
    with running_clinic(postgres, shared_clinic_aws) as clinic:
        assert clinic.app.state.settings.web.secure_cookies is True
        email = clinic.user("patient")["email"]
        page = clinic.client.get("/portal/sign-in")
        [pre] = page.headers.get_list("set-cookie")
        assert pre.startswith("__Host-csrf=") and "Secure" in pre and "HttpOnly" in pre
        token = csrf_of(page.text)
        # The test client sends no Secure cookie over http://, as a browser would not: pass the cookie by hand.
        seed = pre.split(";")[0].split("=", 1)[1]
        signed_in = clinic.client.post(
            "/portal/sign-in",
            data={"email": email, "password": PASSWORD, "csrf_token": token},
            cookies={"__Host-csrf": seed},
            follow_redirects=False,
        )
        [cookie] = [c for c in signed_in.headers.get_list("set-cookie") if c.startswith("__Host-session=")]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie


def test_wrong_password_keeps_the_email_and_says_so_next_to_the_form(portal):
    user = portal.user("patient")
    client = portal.visitor()
    page = sign_in(client, user["email"], "not the password")
    assert page.status_code == 401
    assert "E-mail ou senha incorretos." in page.text
    assert f'value="{user["email"]}"' in page.text
    assert "not the password" not in page.text
    assert "session=" not in page.headers.get("set-cookie", "")


def test_sign_in_shares_the_apis_throttle(portal):
    user = portal.user("patient")
    client = portal.visitor()
    limit = portal.app.state.settings.auth.max_login_failures
    for _ in range(limit):
        assert portal.client.post("/auth/login", json={"email": user["email"], "password": "nope"}).status_code == 401
    locked = sign_in(client, user["email"])  # the right password, but locked out by the API's failures
    assert locked.status_code == 429
    assert "Tentativas malsucedidas demais" in locked.text


def test_unsafe_requests_without_the_right_csrf_token_get_the_403_page(portal):
    user = portal.user("patient")
    client = portal.visitor()
    page = client.get("/portal/sign-in")
    for data in ({}, {"csrf_token": "forged"}):
        refused = client.post("/portal/sign-in", data={"email": user["email"], "password": PASSWORD, **data})
        assert refused.status_code == 403
        assert "Este formulário expirou" in refused.text
    # A token bound to another browser's cookie is refused too.
    other = portal.visitor().get("/portal/sign-in")
    stolen = client.post(
        "/portal/sign-in", data={"email": user["email"], "password": PASSWORD, "csrf_token": csrf_of(other.text)}
    )
    assert stolen.status_code == 403
    assert sign_in(client, user["email"]).status_code == 303 and page.status_code == 200
    # Signed in, the token is bound to the session: the header htmx sends works, the pre-session token does not.
    home = client.get("/portal/sign-in", follow_redirects=False)
    assert home.status_code == 303
    assert client.post("/portal/sign-out", data={"csrf_token": csrf_of(page.text)}).status_code == 403


def test_every_unsafe_portal_route_checks_the_csrf_token(portal):
    """Every page router registered in PAGE_ROUTERS, features' included: an unsafe request without a token is
    refused before the page runs (path parameters filled with 1)."""
    import importlib

    from fastapi.routing import APIRoute

    from clinic_api.web import PAGE_ROUTERS

    client = portal.visitor()
    checked = 0
    for module in PAGE_ROUTERS:
        for route in importlib.import_module(module).router.routes:
            assert isinstance(route, APIRoute)
            for method in route.methods & {"POST", "PUT", "PATCH", "DELETE"}:
                path = re.sub(r"\{[^}]+\}", "1", route.path)
                refused = client.request(method, path, data={"x": "1"})
                assert refused.status_code == 403 and "Este formulário expirou" in refused.text, (method, path)
                checked += 1
    assert checked >= 3  # sign-in, sign-out, language at least


def signed_in_client(portal, role: str = "patient"):
    user = portal.user(role)
    client = portal.visitor()
    assert sign_in(client, user["email"]).status_code == 303
    return client, user


def age_session(portal, user_id: int, **minutes: int) -> None:
    with Session(portal.app.state.engine) as db:
        values = {column: now() - timedelta(minutes=m) for column, m in minutes.items()}
        db.execute(update(WebSession).where(WebSession.user_id == user_id).values(**values))
        db.commit()


@pytest.mark.parametrize(
    ("column", "setting"), [("seen_at", "session_idle_minutes"), ("created_at", "session_absolute_minutes")]
)
def test_an_expired_session_sends_to_sign_in_with_a_message(portal, column, setting):
    client, user = signed_in_client(portal)
    limit = getattr(portal.app.state.settings.web, setting)
    age_session(portal, user["id"], **{column: limit - 1})
    assert client.get("/portal/", follow_redirects=False).status_code == 303
    assert client.get("/portal/", follow_redirects=False).headers["location"] == "/portal/appointments"
    age_session(portal, user["id"], **{column: limit + 1})
    expired = client.get("/portal/", follow_redirects=False)
    assert expired.headers["location"] == "/portal/sign-in?next=/portal/"
    page = client.get(expired.headers["location"])
    assert "Sua sessão terminou. Entre de novo." in page.text
    # htmx asks for a fragment: told to load the sign-in page whole instead.
    fragment = client.get("/portal/", headers={"HX-Request": "true"}, follow_redirects=False)
    assert (fragment.status_code, fragment.headers["hx-redirect"]) == (200, "/portal/sign-in?next=/portal/")


def test_a_disabled_or_revoked_account_loses_its_session_at_once(portal):
    for change in ({"disabled_at": now()}, {"token_version": User.token_version + 1}):
        client, user = signed_in_client(portal)
        assert client.get("/portal/", follow_redirects=False).headers["location"] == "/portal/appointments"
        with Session(portal.app.state.engine) as db:
            db.execute(update(User).where(User.id == user["id"]).values(**change))
            db.commit()
        assert client.get("/portal/", follow_redirects=False).headers["location"].startswith("/portal/sign-in")


def test_sign_out_deletes_the_session_so_the_old_cookie_is_worthless(portal):
    client, user = signed_in_client(portal)
    cookie = dict(client.cookies)
    page = client.get("/portal/sign-in?next=/portal/x", follow_redirects=True)  # any page: the layout's form
    out = client.post("/portal/sign-out", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert out.headers["location"] == "/portal/sign-in"
    with Session(portal.app.state.engine) as db:
        assert db.query(WebSession).filter_by(user_id=user["id"]).count() == 0
    replay = portal.visitor()
    replay.cookies.update(cookie)
    assert replay.get("/portal/", follow_redirects=False).headers["location"].startswith("/portal/sign-in")


def test_error_pages_are_html_in_the_users_language_and_the_api_keeps_json(portal):
    missing = portal.client.get("/portal/no-such-page")
    assert missing.status_code == 404 and "Página não encontrada" in missing.text
    english = portal.client.get("/portal/no-such-page", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "Page not found" in english.text and '<html lang="en">' in english.text
    assert portal.client.get("/no-such-endpoint").json() == {"detail": "Not Found"}


def test_language_switch_sets_a_cookie_and_returns_to_the_page(portal):
    client = portal.visitor()
    page = client.get("/portal/sign-in")
    switched = client.post(
        "/portal/language",
        data={"language": "en", "next": "/portal/sign-in", "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert switched.headers["location"] == "/portal/sign-in"
    assert "Max-Age=31536000" in switched.headers["set-cookie"]
    assert "Forgot your password?" in client.get("/portal/sign-in").text
    elsewhere = client.post(
        "/portal/language",
        data={"language": "en", "next": "https://evil.example/", "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert elsewhere.headers["location"] == "/portal/"


def test_an_unhandled_error_under_portal_is_the_500_page(portal):
    def boom():
        raise RuntimeError("boom")

    portal.app.add_api_route("/portal/test-boom", boom)
    try:
        page = portal.visitor(raise_server_exceptions=False).get("/portal/test-boom")
    finally:
        portal.app.router.routes.pop()
    assert page.status_code == 500 and "Algo deu errado do nosso lado" in page.text
    assert page.headers["content-security-policy"] == PAGE_CSP


def test_a_401_from_the_apis_functions_under_portal_asks_to_sign_in_again(portal):
    from fastapi import HTTPException

    def gone():
        raise HTTPException(401, "missing, invalid or expired token")

    portal.app.add_api_route("/portal/test-gone", gone)
    try:
        answer = portal.visitor().get("/portal/test-gone?x=1", follow_redirects=False)
    finally:
        portal.app.router.routes.pop()
    assert (answer.status_code, answer.headers["location"]) == (303, "/portal/sign-in?next=/portal/test-gone%3Fx%3D1")


def test_web_settings_name_the_key_the_value_and_what_is_allowed():
    from pydantic import ValidationError

    from clinic_api.settings import WebSettings

    with pytest.raises(ValidationError, match=r"web.session_idle_minutes .* = 600 is longer than .* = 60"):
        WebSettings(session_idle_minutes=600, session_absolute_minutes=60)
    with pytest.raises(ValidationError, match="session_idle_minutes"):
        WebSettings(session_idle_minutes=1)


def test_read_form_gives_messages_per_field_in_the_users_language_and_keeps_the_values(portal):
    from pydantic import BaseModel, EmailStr, Field

    from clinic_api.web.forms import read_form

    class Booking(BaseModel):
        email: EmailStr
        name: str = Field(min_length=3, max_length=20)
        count: int = Field(ge=1)
        purposes: list[str] = []

    seen = {}

    async def post(request: Request):
        form = await read_form(request, Booking)
        seen.update(data=form.data, errors=form.errors, values=form.values)
        return {}

    portal.app.add_api_route("/portal/test-form", post, methods=["POST"])
    try:
        client = portal.visitor()
        token = csrf_of(client.get("/portal/sign-in").text)
        posted = {"email": "not-an-email", "name": "Jo", "count": "0", "csrf_token": token}
        response = client.post("/portal/test-form", data=posted)
        assert response.status_code == 200, response.text[:3000]
        assert seen["data"] is None
        assert seen["errors"] == {
            "email": "Digite um e-mail válido, como nome@exemplo.com.",
            "name": "Digite pelo menos 3 caracteres.",
            "count": "Digite um valor de pelo menos 1.",
        }
        assert seen["values"] == {"email": "not-an-email", "name": "Jo", "count": "0"}  # no token among them
        client.post("/portal/test-form", data={"csrf_token": token}, headers={"Accept-Language": "en"})
        assert seen["errors"]["email"] == "This field is required."
        good = {"email": "a@example.org", "name": "Joana", "count": "2", "purposes": "care", "csrf_token": token}
        client.post("/portal/test-form", data=good)
        assert seen["errors"] == {} and seen["data"] == Booking(
            email="a@example.org", name="Joana", count=2, purposes=["care"]
        )
    finally:
        portal.app.router.routes.pop()
