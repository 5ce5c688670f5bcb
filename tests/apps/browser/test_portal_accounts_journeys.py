"""The account pages in a real browser, in Portuguese: a visitor registers and confirms from the email moto's SES
holds, a patient resets a forgotten password, staff disable an account (its open session dies at once) and give a
doctor days off. Bad input keeps what was typed, with the message next to the field; axe checks every page."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from api_support import cursor_at
from playwright.sync_api import expect
from support import wait_for

NEW_PASSWORD = "lantern orchard tidepool"


def emailed_link(sent_emails, to: str, subject: str, path: str) -> str:
    """The path and fragment of the link in the newest email `to` got with `subject` (the link's host is the
    clinic's public URL; the browser opens it on the test server)."""
    wait_for(lambda: any(m["subject"] == subject for m in sent_emails(to)), 30, f"the email {subject!r}")
    [*_, message] = [m for m in sent_emails(to) if m["subject"] == subject]
    found = re.search(rf"({re.escape(path)}#token=[\w.-]+)", message["body"])
    assert found, message["body"]
    return found.group(1)


def described(page, label: str):
    """The input labelled `label`: its accessible description holds the message shown next to it."""
    return page.get_by_label(label, exact=True)


def test_a_visitor_registers_confirms_from_the_emailed_link_and_signs_in(
    page, sent_emails, sign_in, check_accessibility
):
    email = f"ana-{uuid.uuid4().hex[:6]}@example.org"
    page.goto("/portal/sign-in")
    page.get_by_role("link", name="Criar uma conta de paciente").click()
    expect(page.get_by_role("heading", name="Criar uma conta de paciente", level=1)).to_be_visible()
    check_accessibility(page)

    page.get_by_label("E-mail", exact=True).fill("ana@")
    page.get_by_role("button", name="Criar conta").click()
    expect(described(page, "Nome completo")).to_have_accessible_description("Este campo é obrigatório.")
    expect(described(page, "E-mail")).to_have_accessible_description(re.compile("Digite um e-mail válido"))
    expect(page.get_by_label("E-mail", exact=True)).to_have_value("ana@")
    check_accessibility(page)

    page.get_by_label("Nome completo").fill("Ana Souza")
    page.get_by_label("E-mail", exact=True).fill(email)
    page.get_by_role("button", name="Criar conta").click()
    expect(page.get_by_role("heading", name="Confira o seu e-mail", level=1)).to_be_visible()
    check_accessibility(page)

    link = emailed_link(sent_emails, email, "Confirme seu e-mail na Clinic", "/portal/verify-email")
    page.goto(link)
    expect(page).to_have_url(re.compile(r"/portal/verify-email$"))  # the code left the address bar and history
    check_accessibility(page)
    page.get_by_label("Senha").fill("password1234")
    page.get_by_role("button", name="Confirmar e escolher a senha").click()
    expect(described(page, "Senha")).to_have_accessible_description(
        re.compile("Esta é uma das 30.000 senhas mais comuns")
    )
    expect(page.get_by_label(re.compile("^Atendimento"))).to_be_checked()
    check_accessibility(page)

    page.get_by_label("Senha").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Confirmar e escolher a senha").click()
    expect(page.get_by_role("status")).to_contain_text("Seu e-mail foi confirmado.")
    page.get_by_label("E-mail", exact=True).fill(email)
    page.get_by_label("Senha").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Entrar").click()
    expect(page).to_have_url(re.compile(r"/portal/appointments"))
    expect(page.get_by_text("Ana Souza")).to_be_visible()


def test_a_patient_resets_a_forgotten_password_then_changes_it_on_the_profile(
    page, make_account, sent_emails, sign_in, check_accessibility
):
    patient = make_account("patient")
    page.goto("/portal/sign-in")
    page.get_by_role("link", name="Esqueceu a senha?").click()
    check_accessibility(page)
    page.get_by_label("E-mail", exact=True).fill(patient.email)
    page.get_by_role("button", name="Enviar o link").click()
    expect(page.get_by_role("status")).to_contain_text("Se este endereço tiver uma conta")

    page.goto(emailed_link(sent_emails, patient.email, "Escolha uma nova senha na Clinic", "/portal/reset-password"))
    check_accessibility(page)
    page.get_by_label("Nova senha").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Alterar senha").click()
    expect(page.get_by_role("status")).to_contain_text("Sua senha foi alterada")

    page.get_by_label("E-mail", exact=True).fill(patient.email)
    page.get_by_label("Senha").fill(patient.password)
    page.get_by_role("button", name="Entrar").click()
    expect(page.get_by_role("alert")).to_contain_text("E-mail ou senha incorretos.")
    sign_in(page, dataclasses.replace(patient, password=NEW_PASSWORD))
    expect(page).to_have_url(re.compile(r"/portal/appointments"))

    # Signed in, from the profile: the current password is asked for, and a wrong one is named at its field.
    page.goto("/portal/profile")
    page.get_by_role("link", name="Alterar sua senha").click()
    page.get_by_label("Senha atual").fill(patient.password)
    page.get_by_label("Nova senha", exact=True).fill(patient.password + " again")
    page.get_by_label("Repita a nova senha").fill(patient.password + " again")
    page.get_by_role("button", name="Alterar senha").click()
    expect(page.get_by_label("Senha atual")).to_have_accessible_description("Esta não é a sua senha atual.")
    check_accessibility(page)
    page.get_by_label("Senha atual").fill(NEW_PASSWORD)
    page.get_by_label("Nova senha", exact=True).fill(patient.password + " again")
    page.get_by_label("Repita a nova senha").fill(patient.password + " again")
    page.get_by_role("button", name="Alterar senha").click()
    expect(page.get_by_role("status")).to_contain_text("Sua senha foi alterada e todas as sessões foram encerradas")
    sign_in(page, dataclasses.replace(patient, password=patient.password + " again"))
    expect(page).to_have_url(re.compile(r"/portal/appointments"))


def test_staff_disable_an_account_and_its_open_session_dies_at_once(
    page, browser, clinic, make_account, sign_in, check_accessibility
):
    patient, staff = make_account("patient"), make_account("staff")
    patients_browser = browser.new_context(base_url=clinic.base_url, locale="pt-BR")
    patients_page = patients_browser.new_page()
    sign_in(patients_page, patient)

    sign_in(page, staff)
    page.get_by_role("navigation", name="Principal").get_by_role("link", name="Contas").click()
    check_accessibility(page)
    # The list pages by id, the newest last: open the page that starts with the new patient.
    at_patient = cursor_at(clinic.api.app, "users?role=patient", staff.id, [patient.id - 1])
    page.goto(f"/portal/staff/accounts?role=patient&cursor={at_patient}")
    row = page.get_by_role("row", name=re.compile(re.escape(patient.email)))
    expect(row).to_contain_text("Ativa")
    row.get_by_role("button", name=f"Desativar {patient.name}").click()
    expect(row).to_contain_text("Desativada")  # the row swapped in place (htmx)
    expect(row.get_by_role("button", name=f"Reativar {patient.name}")).to_be_visible()
    check_accessibility(page)

    patients_page.goto("/portal/")  # any page that needs the session
    expect(patients_page).to_have_url(re.compile(r"/portal/sign-in"))
    expect(patients_page.get_by_role("status")).to_contain_text("Sua sessão terminou")
    patients_browser.close()


def test_staff_give_a_doctor_days_off_and_no_slot_is_offered_on_them(
    page, clinic, make_account, sign_in, check_accessibility
):
    doctor, staff = make_account("doctor", name=f"Dra Lima {uuid.uuid4().hex[:4]}"), make_account("staff")
    sign_in(page, staff)
    expect(page).to_have_url(re.compile(r"/portal/staff/doctors$"))
    check_accessibility(page)
    page.get_by_role("link", name=doctor.name).click()
    expect(page.get_by_role("heading", name=doctor.name, level=1)).to_be_visible()
    check_accessibility(page)

    zone = ZoneInfo(clinic.api.app.state.settings.agenda.time_zone)
    first = datetime.now(zone).date() + timedelta(days=10)
    page.get_by_label("Primeiro dia").fill((first + timedelta(days=1)).isoformat())
    page.get_by_label("Último dia").fill(first.isoformat())
    page.get_by_label("Motivo").fill("Congresso de cardiologia")
    page.get_by_role("button", name="Adicionar folga").click()
    expect(described(page, "Último dia")).to_have_accessible_description("O último dia não pode ser antes do primeiro.")
    expect(page.get_by_label("Motivo")).to_have_value("Congresso de cardiologia")
    check_accessibility(page)

    page.get_by_label("Primeiro dia").fill(first.isoformat())
    page.get_by_label("Último dia").fill((first + timedelta(days=1)).isoformat())
    page.get_by_role("button", name="Adicionar folga").click()
    expect(page.get_by_role("status")).to_contain_text("As folgas do médico foram adicionadas")
    expect(page.get_by_role("table", name="Folgas")).to_contain_text("Congresso de cardiologia")
    days = {"from": first.isoformat(), "to": (first + timedelta(days=1)).isoformat()}
    slots = clinic.api.client.get(f"/doctors/{doctor.id}/slots", params=days, headers=doctor.headers)
    assert slots.status_code == 200 and slots.json()["slots"] == [], "the API offers no slot on the days off"

    page.get_by_role("button", name="Remover folga: Congresso de cardiologia").click()
    expect(page.get_by_role("status")).to_contain_text("As folgas foram removidas.")
    expect(page.get_by_text("Nenhuma folga pela frente.")).to_be_visible()
