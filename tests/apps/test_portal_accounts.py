"""The account pages over HTTP (the browser journeys are in browser/test_portal_accounts_journeys.py): who may open
the staff pages, disabling without JavaScript and its rules, the answers that must not tell accounts apart, and a
doctor's weekly hours."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from api_support import csrf_of, cursor_at, running_clinic
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from clinic_api.accounts import pages
from clinic_api.agendas.models import ScheduleBlock, ScheduleException
from clinic_api.models import AuditLog, Consent, OutboxEvent, User


@pytest.fixture(scope="module")
def portal(postgres, shared_clinic_aws):
    with running_clinic(postgres, shared_clinic_aws, web={"secure_cookies": False}) as clinic:
        yield clinic


def browser(portal, account: dict | None = None) -> TestClient:
    """The portal's client with its cookies cleared (a new visitor), signed in as `account` when given. One client:
    its event loop is the one the app's pools belong to."""
    client = portal.client
    client.cookies.clear()
    client.headers["Accept-Language"] = "pt-BR"
    if account:
        page = client.get("/portal/sign-in")
        data = {"email": account["email"], "password": "correct horse battery", "csrf_token": csrf_of(page.text)}
        assert client.post("/portal/sign-in", data=data, follow_redirects=False).status_code == 303
    return client


def post(client: TestClient, page: str, action: str, data: dict | None = None, **kwargs):
    return client.post(action, data={**(data or {}), "csrf_token": csrf_of(client.get(page).text)}, **kwargs)


def flash(response) -> list[str]:
    return re.findall(r'<p class="flash">([^<]+)</p>', response.text)


def errors(response) -> dict[str, str]:
    return dict(re.findall(r'<p class="error" id="([\w-]+)-error">([^<]+)</p>', response.text))


@pytest.mark.parametrize("path", ["/portal/staff/accounts", "/portal/staff/doctors", "/portal/staff/doctors/{doctor}"])
def test_staff_pages_send_others_to_sign_in_or_the_403_page(portal, path):
    doctor = portal.user("doctor")
    path = path.format(doctor=doctor["id"])
    anonymous = browser(portal).get(path, follow_redirects=False)
    assert (anonymous.status_code, anonymous.headers["location"]) == (303, f"/portal/sign-in?next={path}")
    for role in ("patient", "doctor"):
        assert browser(portal, portal.user(role)).get(path).status_code == 403, role
    assert browser(portal, portal.user("staff")).get(path).status_code == 200


def test_without_javascript_staff_disable_a_patient_and_cannot_disable_an_admin(portal):
    staff, patient, admin = portal.user("staff"), portal.user("patient", "pat plain"), portal.user("admin")
    client = browser(portal, staff)
    at_patient = cursor_at(portal.app, "users", staff["id"], [patient["id"] - 1])  # the page that starts with them
    listing = client.get("/portal/staff/accounts", params={"cursor": at_patient}).text
    assert f'action="/portal/staff/accounts/{patient["id"]}/disable"' in listing
    assert f"/portal/staff/accounts/{admin['id']}/" not in listing, "no button the rules would refuse"
    assert f"/portal/staff/accounts/{staff['id']}/" not in listing, "nor for oneself"

    done = post(client, "/portal/staff/accounts", f"/portal/staff/accounts/{patient['id']}/disable")
    assert flash(done) == ["A conta de Pat Plain foi desativada."]
    refused = post(client, "/portal/staff/accounts", f"/portal/staff/accounts/{admin['id']}/disable")
    assert flash(refused) == ["A equipe só pode desativar ou reativar contas de pacientes e médicos."]
    with Session(portal.app.state.engine) as session:
        assert session.get_one(User, patient["id"]).disabled_at is not None
        assert session.get_one(User, admin["id"]).disabled_at is None
        audit = session.scalars(select(AuditLog).where(AuditLog.subject_id == patient["id"])).all()
    assert ("account.disabled", staff["id"]) in [(a.action, a.user_id) for a in audit], "audited as the API does"
    assert ("accounts.list", staff["id"]) in [(a.action, a.user_id) for a in audit], "the list is in the access log"

    enabled = post(
        client, "/portal/staff/accounts", f"/portal/staff/accounts/{patient['id']}/enable", headers={"HX-Request": "1"}
    )
    assert enabled.status_code == 200 and enabled.text.startswith(f'<tr id="account-{patient["id"]}">'), "the row"
    assert "Ativa" in enabled.text and "Desativar Pat Plain" in enabled.text


def test_asking_for_a_reset_answers_the_same_for_any_address(portal):
    known = portal.user("patient")
    answers = [
        post(
            browser(portal), "/portal/forgot-password", "/portal/forgot-password", {"email": e}, follow_redirects=False
        )
        for e in (known["email"], f"nobody-{uuid.uuid4().hex[:6]}@example.org")
    ]
    assert {(a.status_code, a.headers["location"]) for a in answers} == {(303, "/portal/sign-in")}
    assert len({frozenset(a.headers) for a in answers}) == 1
    with Session(portal.app.state.engine) as session:
        queued = session.scalars(
            select(OutboxEvent.event_type).where(OutboxEvent.payload["user_id"].as_integer() == known["id"])
        )
        assert list(queued) == ["account.password_reset_requested"]


def test_a_link_opened_without_its_code_says_so_at_the_top_of_the_form(portal):
    for page in ("/portal/verify-email", "/portal/reset-password"):
        answer = post(browser(portal), page, page, {"password": "lantern orchard tidepool", "purposes": "care"})
        assert answer.status_code == 422
        assert "Abra de novo o link do e-mail: esta página não conseguiu ler o código dele." in answer.text, page


def test_a_user_changes_their_password_on_the_page_and_every_session_ends(portal):
    """Any role: the current password, the API's policy, the new one twice; then every session of the account ends
    (this one too) and only the new password signs in."""
    doctor = portal.user("doctor")
    elsewhere = portal.visitor(doctor)
    client = browser(portal, doctor)
    assert 'href="/portal/password"' in client.get("/portal/profile").text, "the profile page leads there"

    def change(current: str, new: str, repeat: str | None = None):
        data = {"current_password": current, "new_password": new, "repeat_password": repeat or new}
        return post(client, "/portal/password", "/portal/password", data, follow_redirects=False)

    refused = {
        "current_password": change("not my password at all", "lantern orchard tidepool"),
        "new_password": change("correct horse battery", "correct horse battery"),
        "repeat_password": change("correct horse battery", "lantern orchard tidepool", "lantern orchard tidepoll"),
    }
    for name, answer in refused.items():
        assert answer.status_code == 422 and list(errors(answer)) == [name], (name, errors(answer))
    assert errors(refused["current_password"]) == {"current_password": "Esta não é a sua senha atual."}
    too_common = change("correct horse battery", "password1234")
    assert too_common.status_code == 422 and "new_password" in errors(too_common), "the API's policy, at the field"
    assert "correct horse battery" not in too_common.text, "a password is never written back into the page"

    changed = change("correct horse battery", "lantern orchard tidepool")
    assert (changed.status_code, changed.headers["location"]) == (303, "/portal/sign-in")
    for session in (client, elsewhere):
        assert session.get("/portal/profile", follow_redirects=False).status_code == 303, "signed out"
    assert (
        portal.client.post(
            "/auth/login", json={"email": doctor["email"], "password": "correct horse battery"}
        ).status_code
        == 401
    )
    assert portal.login(doctor["email"], "lantern orchard tidepool")


def test_registering_keeps_what_was_typed_and_answers_the_same_when_the_email_is_taken(portal):
    taken = portal.user("patient")["email"]
    bad = post(
        browser(portal), "/portal/register", "/portal/register", {"full_name": "Zé", "email": "zé@", "language": "en"}
    )
    assert bad.status_code == 422 and "email" in errors(bad)
    assert 'value="zé@"' in bad.text and 'value="Zé"' in bad.text and '<option value="en" selected>' in bad.text
    answers = [
        post(
            browser(portal),
            "/portal/register",
            "/portal/register",
            {"full_name": "Zé", "email": e},
            follow_redirects=False,
        )
        for e in (taken, f"new-{uuid.uuid4().hex[:6]}@example.org")
    ]
    assert {(a.status_code, a.headers["location"]) for a in answers} == {(303, "/portal/register/sent")}


def test_staff_add_and_remove_a_doctors_weekly_hours_with_the_apis_checks(portal):
    doctor = portal.user("doctor", open_all_day=False)
    page = f"/portal/staff/doctors/{doctor['id']}"
    client = browser(portal, portal.user("staff"))
    hours = {"weekday": "2", "starts": "08:00", "ends": "12:00", "slot_minutes": "30", "kind": "video"}
    added = post(client, page, f"{page}/blocks", hours)
    assert flash(added) == ["O período foi adicionado à agenda semanal."]
    overlapping = post(client, page, f"{page}/blocks", {**hours, "starts": "11:00", "ends": "13:00"})
    assert overlapping.status_code == 422
    assert errors(overlapping) == {"starts": "Este período se sobrepõe a outro no mesmo dia da semana."}
    assert 'value="11:00"' in overlapping.text, "what was typed is kept"
    reversed_hours = post(client, page, f"{page}/blocks", {**hours, "weekday": "3", "starts": "12:00", "ends": "08:00"})
    assert errors(reversed_hours) == {"ends": "O fim precisa ser depois do início."}

    with Session(portal.app.state.engine) as session:
        [block] = session.scalars(select(ScheduleBlock).where(ScheduleBlock.doctor_id == doctor["id"])).all()
    assert (block.weekday, f"{block.starts:%H:%M}", block.kind) == (2, "08:00", "video")
    schedule = portal.client.get(f"/doctors/{doctor['id']}/schedule", headers=doctor["headers"]).json()
    assert [b["starts"] for b in schedule["blocks"]] == ["08:00:00"], "the API sees the page's change"
    removed = post(client, page, f"{page}/blocks/{block.id}/remove")
    assert flash(removed) == ["O período foi removido da agenda semanal."]
    assert "Sem horários semanais" in removed.text


def test_staff_close_the_clinic_for_a_holiday_and_reopen_it(portal):
    staff = portal.user("staff")
    client = browser(portal, staff)
    holiday = {"first_day": "2027-04-21", "last_day": "2027-04-21", "reason": f"Tiradentes {uuid.uuid4().hex[:4]}"}
    reversed_days = post(
        client, "/portal/staff/doctors", "/portal/staff/closures", {**holiday, "first_day": "2027-04-22"}
    )
    assert errors(reversed_days) == {"last_day": "O último dia não pode ser antes do primeiro."}
    assert f'value="{holiday["reason"]}"' in reversed_days.text

    added = post(client, "/portal/staff/doctors", "/portal/staff/closures", holiday)
    assert flash(added)[0].startswith("O fechamento da clínica foi adicionado")
    [closure] = [
        c for c in portal.client.get("/closures", headers=staff["headers"]).json() if c["reason"] == holiday["reason"]
    ]
    assert (closure["doctor_id"], closure["starts_at"]) == (None, "2027-04-21T03:00:00Z"), "midnight in São Paulo"
    removed = post(client, "/portal/staff/doctors", f"/portal/staff/closures/{closure['id']}/remove")
    assert flash(removed) == ["O fechamento foi removido."]
    assert holiday["reason"] not in [
        c["reason"] for c in portal.client.get("/closures", headers=staff["headers"]).json()
    ]


def test_staff_page_through_a_doctors_days_off_and_the_clinics_closures(portal, monkeypatch):
    monkeypatch.setattr(pages, "PAGE_SIZE", 1)
    doctor, tag = portal.user("doctor"), uuid.uuid4().hex[:6]
    far = datetime(2099, 5, 1, tzinfo=UTC)  # beyond any booking horizon: no other test's slots are closed by these
    with Session(portal.app.state.engine) as session:
        for owner, day, name in ((doctor["id"], 2, "Leave"), (doctor["id"], 1, "Congress"), (None, 1, "Holiday")):
            reason = f"{name} {tag}"
            starts_at = far + timedelta(days=day)
            session.add(
                ScheduleException(
                    doctor_id=owner, starts_at=starts_at, ends_at=starts_at + timedelta(hours=8), reason=reason
                )
            )
        session.commit()
    client = browser(portal, portal.user("staff"))
    page = f"/portal/staff/doctors/{doctor['id']}"
    try:
        first = client.get(page)
        assert f"Congress {tag}" in first.text and f"Leave {tag}" not in first.text, "by start, a page at a time"
        later = re.search(rf'href="({page}\?cursor=[^"#]+)#days-off"', first.text).group(1)
        second = client.get(later)
        assert f"Leave {tag}" in second.text and f"Congress {tag}" not in second.text
        assert "Folgas seguintes" not in second.text, "the last page links to no later one"
        # The closures continue on the doctors page, where they are managed, a page at a time.
        reasons, url = [], "/portal/staff/doctors"
        while url:
            shown = client.get(url)
            reasons += re.findall(r"<td>([^<]+)</td>\s*<td>\s*<form", shown.text)
            url = (
                re.findall(r'href="(/portal/staff/doctors\?closures_cursor=[^"#]+)#closures"', shown.text) or [None]
            )[0]
            assert len(reasons) < 50
        assert reasons.count(f"Holiday {tag}") == 1
        # A link altered, or another account's: the page answers 422, the message and a first-page link by the list.
        payload, signature = later.split("cursor=")[1].split(".")
        altered = f"{page}?cursor={payload[:-1]}{'A' if payload[-1] != 'A' else 'B'}.{signature}"
        closures_page = f"/portal/staff/doctors?closures_cursor={later.split('cursor=')[1]}"  # another list's
        for link, first_page in (
            (altered, f"{page}#days-off"),
            (f"{page}?cursor=x", f"{page}#days-off"),
            (closures_page, "/portal/staff/doctors#closures"),
        ):
            refused = client.get(link)
            assert refused.status_code == 422, link
            assert "Este link de página não é válido" in refused.text
            assert f'<a href="{first_page}">Primeira página</a>' in refused.text, link
        other_staff = browser(portal, portal.user("staff"))
        assert other_staff.get(later).status_code == 422, "another account's link"
    finally:
        with Session(portal.app.state.engine) as session:  # the clinic's closures are every test's
            session.execute(delete(ScheduleException).where(ScheduleException.reason.endswith(tag)))
            session.commit()


@pytest.mark.parametrize("page", ["/portal/reset-password", "/portal/verify-email"])
def test_an_emailed_link_page_posted_without_its_token_says_to_open_the_link_again(portal, page):
    client = browser(portal)
    client.headers["Accept-Language"] = "en"
    answer = post(client, page, page, {"password": "a long enough new password 42"}, follow_redirects=False)
    assert answer.status_code == 422
    assert "Open the link from the email again: this page could not read its code." in answer.text


def test_list_pages_follow_their_signed_next_link_and_answer_a_changed_one_with_the_first_page_link(
    portal, monkeypatch
):
    from clinic_api.accounts import pages as account_pages
    from clinic_api.privacy import pages as privacy_pages

    monkeypatch.setattr(account_pages, "PAGE_SIZE", 2)
    monkeypatch.setattr(privacy_pages, "PAGE_SIZE", 2)
    staff = portal.user("staff")
    for _ in range(3):
        portal.user("doctor")
    client = browser(portal, staff)
    with Session(portal.app.state.engine) as session:
        doctors = list(session.scalars(select(User.id).where(User.role == "doctor").order_by(User.id)))
    assert len(doctors) > 2
    for start, row in [
        ("/portal/staff/accounts?role=doctor", r'<tr id="account-(\d+)">'),
        ("/portal/staff/doctors", r'<a href="/portal/staff/doctors/(\d+)">'),
    ]:
        shown, url = [], start
        while url:
            page = client.get(url)
            assert page.status_code == 200
            shown += [int(i) for i in re.findall(row, page.text)]
            following = re.search(rf'href="({re.escape(start.split("?")[0])}\?[^"]*cursor=[^"]*)"', page.text)
            url = html.unescape(following.group(1)) if following else None
            assert not url or start.partition("?")[2] in url, "the filter is kept"
        assert shown == doctors, f"{start}: every doctor once, by id, over pages"

    cursor = cursor_at(portal.app, "users?role=doctor", staff["id"], [doctors[0]])
    changed = cursor[:-1] + ("A" if cursor[-1] != "A" else "B")
    for tampered in (changed, "garbage", cursor_at(portal.app, "users", staff["id"], [doctors[0]])):
        refused = client.get("/portal/staff/accounts", params={"role": "doctor", "cursor": tampered})
        assert refused.status_code == 422 and "Este link de página não é válido" in refused.text
        assert 'href="/portal/staff/accounts?role=doctor">Primeira página</a>' in refused.text
        assert "<tr id=" not in refused.text
    doctors_page = client.get("/portal/staff/doctors", params={"cursor": changed})
    assert doctors_page.status_code == 422 and 'href="/portal/staff/doctors">Primeira página</a>' in doctors_page.text
    audit = client.get("/portal/staff/audit", params={"action": "audit.read", "cursor": changed})
    assert audit.status_code == 422 and "Este link de página não é válido" in audit.text
    assert 'href="/portal/staff/audit?action=audit.read">Registros mais recentes</a>' in audit.text
    for _ in range(3):  # each read of the log is a row of it: three at least
        client.get("/portal/staff/audit")
    older = client.get("/portal/staff/audit?action=audit.read")
    following = re.search(r'href="(/portal/staff/audit\?[^"]*cursor=[^"]*)"', older.text)
    assert following and "action=audit.read&" in html.unescape(following.group(1)), "the filter is kept"
    assert client.get(html.unescape(following.group(1))).status_code == 200

    patient = portal.user("patient")
    with Session(portal.app.state.engine) as session:
        session.add_all(Consent(user_id=patient["id"], notice_version="2026-11", purposes=["care"]) for _ in range(3))
        session.commit()
    own = browser(portal, patient)
    first = own.get("/portal/privacy")
    older = re.search(r'href="/portal/privacy\?(history=[^"#]*)#consents"', first.text)
    second = own.get(f"/portal/privacy?{html.unescape(older.group(1))}") if older else first
    history = [page.text.split("<details")[1].split("</details>")[0] for page in (first, second)]
    assert [h.count("<li>") for h in history] == [2, 1], "three consents, two a page"
    assert 'href="/portal/privacy?history=' not in history[1] and second.text.count("<details open>") == 1
    for params in ({"cursor": changed}, {"history": changed}):
        refused = own.get("/portal/privacy", params=params)
        assert refused.status_code == 422 and "Este link de página não é válido" in refused.text, params
