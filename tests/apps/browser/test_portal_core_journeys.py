"""The portal's core in a real browser: signing in and out, an expired session, CSRF, the language, accessibility."""

from __future__ import annotations

import re
from datetime import timedelta

from playwright.sync_api import expect
from sqlalchemy import update
from sqlalchemy.orm import Session

from clinic_api.models import now
from clinic_api.web.models import WebSession


def test_a_patient_mistypes_the_password_then_signs_in_and_out(page, make_account, sign_in, check_accessibility):
    patient = make_account("patient")
    page.goto("/portal/")
    expect(page).to_have_url(re.compile(r"/portal/sign-in\?next=/portal/$"))
    expect(page.get_by_role("heading", name="Entrar", level=1)).to_be_visible()
    check_accessibility(page)

    page.get_by_label("E-mail").fill(patient.email)
    page.get_by_label("Senha").fill("not the password")
    page.get_by_role("button", name="Entrar").click()
    expect(page.get_by_role("alert")).to_contain_text("E-mail ou senha incorretos.")
    expect(page.get_by_label("E-mail")).to_have_value(patient.email)
    expect(page.get_by_label("Senha")).to_have_value("")
    check_accessibility(page)

    page.get_by_label("Senha").fill(patient.password)
    page.get_by_role("button", name="Entrar").click()
    expect(page).to_have_url(re.compile(r"/portal/appointments"))  # the patient's home (its page may not exist yet)
    navigation = page.get_by_role("navigation", name="Principal")
    expect(navigation.get_by_role("link", name="Minhas consultas")).to_be_visible()
    expect(navigation.get_by_role("link", name="Agendar consulta")).to_be_visible()
    check_accessibility(page)

    cookie = [c for c in page.context.cookies() if c["name"] == "session"]
    assert cookie and cookie[0]["httpOnly"] and cookie[0]["sameSite"] == "Lax"
    page.get_by_role("button", name="Sair").click()
    expect(page).to_have_url(re.compile(r"/portal/sign-in$"))
    expect(page.get_by_role("status")).to_contain_text("Você saiu da sua conta.")
    page.go_back()  # the browser's back button: the page asks to sign in again
    page.goto("/portal/")
    expect(page).to_have_url(re.compile(r"/portal/sign-in"))
    page.context.add_cookies([{**cookie[0]}])  # the old cookie, kept or copied, no longer works either
    page.goto("/portal/")
    expect(page).to_have_url(re.compile(r"/portal/sign-in"))


def test_an_expired_session_asks_to_sign_in_again_and_returns_to_the_page(page, clinic, make_account, sign_in):
    doctor = make_account("doctor")
    sign_in(page, doctor)
    expect(page).to_have_url(re.compile(r"/portal/agenda"))
    idle = clinic.api.app.state.settings.web.session_idle_minutes
    with Session(clinic.api.app.state.engine) as db:
        db.execute(
            update(WebSession)
            .where(WebSession.user_id == doctor.id)
            .values(seen_at=now() - timedelta(minutes=idle + 1))
        )
        db.commit()
    page.goto("/portal/")
    expect(page).to_have_url(re.compile(r"/portal/sign-in\?next=/portal/$"))
    expect(page.get_by_role("status")).to_contain_text("Sua sessão terminou. Entre de novo.")
    sign_in(page, doctor)
    expect(page).to_have_url(re.compile(r"/portal/agenda"))


def test_a_form_posted_without_its_csrf_token_is_refused(page, make_account, sign_in):
    staff = make_account("staff")
    sign_in(page, staff)
    # A form without its token (what another site's forged form amounts to) gets the 403 page, and does nothing.
    page.goto("/portal/sign-in?next=/portal/")
    page.locator('form[action="/portal/sign-out"] input[name="csrf_token"]').evaluate("input => input.remove()")
    page.get_by_role("button", name="Sair").click()
    expect(page.get_by_role("heading", name="Este formulário expirou", level=1)).to_be_visible()
    page.goto("/portal/")
    expect(page).to_have_url(re.compile(r"/portal/staff/doctors"))  # still signed in: the forged sign-out did nothing


def test_the_language_switch_renders_english(page, make_account, sign_in, check_accessibility):
    admin = make_account("admin")
    page.goto("/portal/sign-in")
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    sign_in(page, admin)
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log")).to_be_visible()
    check_accessibility(page)
    page.get_by_role("button", name="Português").click()
    expect(page.get_by_role("button", name="Sair")).to_be_visible()
