"""Browser tests of the portal: Playwright's sync API driving Debian's Chromium (/usr/bin/chromium; never
`playwright install`, which downloads a browser) against the API, the portal, PostgreSQL, moto and the notifier, all
running locally. Tests read as journeys and select by role and label.

Fixtures: `clinic` (one for the whole package: the API under uvicorn, outbox relay and notifier on;
`clinic.base_url`), `browser` (the package's), `page` (a fresh context per test, pt-BR), `make_account(role, ...)`,
`sign_in(page, account)`, `check_accessibility(page)` (axe-core; fails on any serious or critical violation),
`sent_emails(to=...)`."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from api_support import PASSWORD, Clinic, served_clinic
from support import running_notifier
from support import sent_emails as moto_sent_emails

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
"""Debian's package (.ci/run installs it). GitHub's Ubuntu runners have no such package (Ubuntu's is a snap) but come
with Google Chrome, which .github/workflows/pr.yml names here."""
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERIOUS = ("serious", "critical")


@dataclass
class PortalClinic:
    """The running clinic: `base_url` of the portal's server, `api` to create data directly or through the API."""

    base_url: str
    api: Clinic
    aws: object


@dataclass(frozen=True)
class Account:
    id: int
    role: str
    email: str
    name: str
    password: str
    headers: dict
    """An API bearer token's header, to arrange data through the API."""


@pytest.fixture(scope="package")
def clinic(postgres, shared_clinic_aws) -> Iterator[PortalClinic]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does), or set CHROMIUM to a Chromium")
    with served_clinic(
        postgres,
        shared_clinic_aws,
        outbox={"relay_enabled": True, "interval_seconds": 0.2},
        web={"secure_cookies": False},
    ) as api:
        yield PortalClinic(str(api.client.base_url).rstrip("/"), api, shared_clinic_aws)


@pytest.fixture(scope="package")
def notifier_worker(postgres, shared_clinic_aws):
    """The notifier consuming the clinic's queues, as deployed, so that sign-up and the like send real (moto) email."""
    with running_notifier(postgres, shared_clinic_aws) as worker:
        yield worker


@pytest.fixture(scope="package")
def browser():
    """One Chromium for all the browser tests, closed after them: Playwright's sync API runs an asyncio loop on the
    main thread while it is open, which tests elsewhere that run a loop of their own would trip over."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, clinic):
    """A fresh browser context (no cookies), in Portuguese as most of the clinic's patients' browsers are."""
    context = browser.new_context(base_url=clinic.base_url, locale="pt-BR", timezone_id="America/Sao_Paulo")
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def make_account(clinic) -> Callable[..., Account]:
    """`make_account("doctor", name="Ana Lima")`: a verified, usable account with PASSWORD and a unique email
    (a doctor sees patients every day, all day: api_support.Clinic.user)."""

    def make(role: str, name: str | None = None, open_all_day: bool = True) -> Account:
        name = name or f"{role.title()} {uuid.uuid4().hex[:4]}"
        made = clinic.api.user(role, name=name.lower(), open_all_day=open_all_day)  # its email is made of the name
        return Account(made["id"], role, made["email"], name.title(), PASSWORD, made["headers"])

    return make


@pytest.fixture
def sign_in() -> Callable:
    """Signs `account` in through the sign-in page (either language) and waits to land on a portal page."""

    def sign_in(page, account: Account) -> None:
        page.goto("/portal/sign-in")
        page.get_by_label(re.compile(r"^(E-mail|Email)$")).fill(account.email)
        page.get_by_label(re.compile(r"^(Senha|Password)$")).fill(account.password)
        page.get_by_role("button", name=re.compile(r"^(Entrar|Sign in)$")).click()
        page.wait_for_url(lambda url: "/portal/sign-in" not in url)

    return sign_in


@pytest.fixture
def check_accessibility() -> Callable:
    """Runs axe-core on the page as it is now; fails listing every serious or critical violation."""
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()

    def check(page) -> None:
        results = axe.run(page)
        bad = [v for v in results.response["violations"] if v.get("impact") in SERIOUS]
        report = "\n".join(
            f"{v['impact']}: {v['id']} ({v['help']}) at {[n['target'] for n in v['nodes']][:5]}" for v in bad
        )
        assert not bad, f"axe-core on {page.url}:\n{report}"

    return check


@pytest.fixture
def sent_emails(clinic, notifier_worker) -> Callable[..., list[dict]]:
    """`sent_emails(to="x@example.org")`: the emails moto's SES accepted for that address (the notifier runs)."""

    def sent(to: str) -> list[dict]:
        return moto_sent_emails(clinic.aws.endpoint, to)

    return sent
