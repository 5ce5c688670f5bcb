"""The patient's profile and privacy pages and the staff's audit log, in a real browser: journeys a patient and a
staff member take, selected by role and label as a person (or a screen reader) finds them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import expect


def staff_reads_profile(clinic, staff, patient) -> None:
    """A staff member opens the patient's profile through the API (a read that goes in the patient's access log)."""
    assert clinic.api.client.get(f"/patients/{patient.id}/profile", headers=staff.headers).status_code == 200


def test_a_patient_edits_their_profile_sees_who_read_it_exports_and_deletes_their_account(
    clinic, page, make_account, sign_in, check_accessibility
):
    patient, staff = make_account("patient", name="Ana Lima"), make_account("staff", name="Sam Staff")
    sign_in(page, patient)

    # A CPF whose check digits are wrong: the message is next to the field, and what was typed stays.
    page.goto("/portal/profile")
    check_accessibility(page)
    cpf, phone = page.get_by_label("CPF"), page.get_by_label("Telefone", exact=True)
    contact = page.get_by_label("Nome do contato")
    cpf.fill("123.456.789-00")
    phone.fill("+55 21 90000-1111")
    contact.fill("Ivo Lima")
    page.get_by_role("button", name="Salvar perfil").click()
    expect(cpf).to_have_attribute("aria-invalid", "true")
    expect(cpf).to_have_accessible_description(re.compile("Digite um CPF válido"))
    expect(cpf).to_have_value("123.456.789-00")
    expect(phone).to_have_value("+55 21 90000-1111")
    check_accessibility(page)
    cpf.fill("529.982.247-25")
    page.get_by_role("button", name="Salvar perfil").click()
    expect(page.get_by_role("status")).to_contain_text("Seu perfil foi salvo.")
    expect(cpf).to_have_accessible_description(re.compile(r"\*\*\*\.\*\*\*\.\*\*\*-25"))
    expect(phone).to_have_value("+55 21 90000-1111")
    expect(contact).to_have_value("Ivo Lima")
    contact.fill("")  # an emptied field is cleared
    page.get_by_role("button", name="Salvar perfil").click()
    expect(page.get_by_role("status")).to_contain_text("Seu perfil foi salvo.")
    expect(contact).to_have_value("")

    # Who accessed my data: the staff member's read, in the clinic's time zone and the patient's language.
    staff_reads_profile(clinic, staff, patient)
    page.goto("/portal/privacy")
    check_accessibility(page)
    access = page.get_by_role("region", name="Quem acessou meus dados").get_by_role("row").filter(has_text="Sam Staff")
    expect(access).to_contain_text("viu seu perfil")
    expect(access).to_contain_text(re.compile(r"\d{1,2} de [a-z]{3}\. de \d{4}"))

    # Consent: research granted, then withdrawn; care stays (withdrawing it is deleting the account).
    research = page.get_by_label("Pesquisa")
    research.check()
    page.get_by_role("button", name="Salvar minhas escolhas").click()
    expect(page.get_by_role("status")).to_contain_text("Suas escolhas foram salvas.")
    expect(research).to_be_checked()
    research.uncheck()
    page.get_by_role("button", name="Salvar minhas escolhas").click()
    expect(research).not_to_be_checked()
    expect(page.get_by_label("Cuidado")).to_be_checked()

    # The export: a file holding their data.
    with page.expect_download() as download:
        page.get_by_role("button", name="Baixar meus dados").click()
    assert re.fullmatch(r"clinic-data-\d{4}-\d{2}-\d{2}\.json", download.value.suggested_filename)
    export = json.loads(Path(download.value.path()).read_text())
    assert export["account"]["email"] == patient.email and export["account"]["full_name"] == "Ana Lima"
    assert export["account"]["patient"]["cpf"] == "***.***.***-25"
    assert export["account"]["patient"]["phone"] == "+55 21 90000-1111"
    assert export["account"]["patient"]["emergency_contact_name"] is None
    assert [c["purposes"] for c in export["consents"]][-2:] == [["care", "research"], ["care"]]
    assert [(e["who_name"], e["action"]) for e in export["access_log"]] == [("Sam Staff", "profile.read")]

    # Deletion, confirmed with the password and a typed phrase.
    page.get_by_role("link", name="Excluir minha conta…").click()
    check_accessibility(page)
    password, phrase = page.get_by_label("Sua senha"), page.get_by_label("Digite EXCLUIR MINHA CONTA para confirmar")
    password.fill("not my password")
    phrase.fill("EXCLUIR MINHA CONTA")
    page.get_by_role("button", name="Excluir minha conta definitivamente").click()
    expect(password).to_have_accessible_description("Esta não é a sua senha.")
    expect(phrase).to_have_value("EXCLUIR MINHA CONTA")
    password.fill(patient.password)
    page.get_by_role("button", name="Excluir minha conta definitivamente").click()
    expect(page).to_have_url(re.compile("/portal/sign-in$"))
    expect(page.get_by_role("status")).to_contain_text("Sua conta foi excluída")

    # The session is gone, and the account no longer signs in.
    page.goto("/portal/privacy")
    expect(page).to_have_url(re.compile("/portal/sign-in"))
    page.get_by_label("E-mail").fill(patient.email)
    page.get_by_label("Senha").fill(patient.password)
    page.get_by_role("button", name="Entrar").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page).to_have_url(re.compile("/portal/sign-in"))


def test_staff_read_the_audit_log_and_a_patient_may_not(clinic, page, make_account, sign_in, check_accessibility):
    staff, patient = make_account("staff", name="Rui Staff"), make_account("patient", name="Bia Rocha")
    staff_reads_profile(clinic, staff, patient)
    sign_in(page, staff)
    page.goto("/portal/staff/audit")
    check_accessibility(page)
    read = page.get_by_role("row").filter(has_text="Bia Rocha").filter(has_text="Rui Staff")
    expect(read).to_contain_text("viu um perfil")
    page.get_by_label("Ação").select_option(label="consultou o registro de auditoria")
    page.get_by_role("button", name="Filtrar").click()
    rows = page.get_by_role("row").filter(has_text="Rui Staff")
    expect(rows.first).to_contain_text("consultou o registro de auditoria")
    expect(page.get_by_role("row").filter(has_text="viu um perfil")).to_have_count(0)
    done_by = page.get_by_label("Feito por (número da conta)")
    done_by.fill("Rui")
    page.get_by_role("button", name="Filtrar").click()
    expect(done_by).to_have_accessible_description("Digite o número de uma conta, como 42.")
    expect(done_by).to_have_value("Rui")
    page.get_by_role("button", name="Sair").click()

    sign_in(page, patient)
    response = page.goto("/portal/staff/audit")
    assert response is not None and response.status == 403
    expect(page.get_by_role("row")).to_have_count(0)
