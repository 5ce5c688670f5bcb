"""The portal's catalogs: every string a template or page module marks has its pt_BR translation (the default
language), placeholders survive translation, and dates are written the user's way in the clinic's zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from clinic_api.web.i18n import PACKAGE_ROOT, Translator, catalog_paths, translations

BABEL_CFG = PACKAGE_ROOT / "babel.cfg"
# What babel.cfg says, as extract_from_dir takes it.
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}


def portal_packages() -> list[Path]:
    """Packages with pages: the core, and each feature with a pages.py or templates."""
    return sorted(
        p for p in PACKAGE_ROOT.iterdir() if p.is_dir() and ((p / "pages.py").exists() or (p / "templates").is_dir())
    )


def marked_strings(package: Path) -> dict[str, str]:
    """msgid -> where it is marked, for the package's templates and page modules (its API code marks none)."""
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        package, METHODS, OPTIONS, strip_comment_tags=True
    ):
        if filename.endswith(".py") and not (filename == "pages.py" or package.name == "web"):
            continue
        msgid = message[0] if isinstance(message, tuple) else message  # a plural's singular is its key
        if msgid:
            found.setdefault(msgid, f"{package.name}/{filename}:{lineno}")
    return found


def translated(msgid: str) -> bool:
    """Whether a pt_BR catalog has a (non-fuzzy, non-empty) translation, even one equal to the msgid ("Agenda")."""
    catalog = translations("pt_BR")._catalog
    return bool(catalog.get(msgid) or catalog.get((msgid, 0)))


def test_babel_cfg_is_what_the_test_extracts_with():
    text = BABEL_CFG.read_text()
    assert "[python: **.py]" in text and "[jinja2: **/templates/**.html]" in text


@pytest.mark.parametrize("package", portal_packages(), ids=lambda p: p.name)
def test_every_marked_string_has_a_pt_br_translation(package):
    marked = marked_strings(package)
    assert marked, f"{package.name}: no translatable string found; is babel.cfg right?"
    missing = sorted(f"{where}: {msgid!r}" for msgid, where in marked.items() if not translated(msgid))
    assert not missing, "no pt_BR translation (add it to the package's locale/pt_BR/LC_MESSAGES/messages.po):\n" + (
        "\n".join(missing)
    )


@pytest.mark.parametrize("language", ["pt_BR", "en"])
def test_catalogs_parse_and_keep_their_placeholders(language):
    paths = catalog_paths(language)
    assert paths[0].parts[-5] == "web"  # the core's first: its plural rule counts
    for path in paths:
        with path.open("rb") as po:
            catalog = read_po(po, locale=language)
        for message in catalog:
            if not message.id or not message.string:
                continue
            ids = message.id if isinstance(message.id, tuple) else (message.id,)
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            wanted = set(re.findall(r"%\((\w+)\)s", " ".join(ids)))
            for string in strings:
                if string:
                    assert set(re.findall(r"%\((\w+)\)s", string)) <= wanted | {"num"}, (path, message.id)


def clashes(paths: list[Path], language: str) -> list[str]:
    """Messages (msgid and context) that two catalogs translate differently: merged into one, only one of the
    translations could be shown, in both features. An empty msgstr (falls back to the msgid) is no translation."""
    first: dict[tuple, tuple[str, object]] = {}
    found = []
    for path in paths:
        with path.open("rb") as po:
            for message in read_po(po, locale=language):
                if not message.id or not message.string or message.fuzzy:
                    continue
                key = (message.id if isinstance(message.id, str) else tuple(message.id), message.context)
                where, string = first.setdefault(key, (path.parts[-5], message.string))
                if string != message.string:
                    found.append(f"{key[0]!r}: {where} {string!r}, {path.parts[-5]} {message.string!r}")
    return found


@pytest.mark.parametrize("language", ["pt_BR", "en"])
def test_no_two_features_translate_one_message_differently(language):
    assert clashes(catalog_paths(language), language) == []


def test_a_clash_between_catalogs_is_caught(tmp_path):
    for feature, string in (("accounts", "Médico(a)"), ("appointments", "Médico")):
        po = tmp_path / feature / "locale/pt_BR/LC_MESSAGES/messages.po"
        po.parent.mkdir(parents=True)
        po.write_text(f'msgid ""\nmsgstr ""\n\nmsgid "Doctor"\nmsgstr "{string}"\n')
    paths = sorted(tmp_path.glob("*/locale/pt_BR/LC_MESSAGES/messages.po"))
    assert clashes(paths, "pt_BR") == ["'Doctor': accounts 'Médico(a)', appointments 'Médico'"]


def test_a_missing_translation_is_caught(tmp_path):
    """The check above fails for a string nobody translated (its own mutation test)."""
    templates = tmp_path / "templates" / "x"
    templates.mkdir(parents=True)
    (templates / "page.html").write_text('{{ _("A sentence nobody translated") }}')
    (tmp_path / "pages.py").write_text('t.gettext("Another one")\n')
    marked = marked_strings(tmp_path)
    assert set(marked) == {"A sentence nobody translated", "Another one"}
    assert not any(translated(m) for m in marked)
    assert translated("Sign in") and translated("Agenda")


def test_dates_in_the_users_language_and_the_clinics_zone():
    instant = datetime(2026, 3, 5, 13, 30, tzinfo=UTC)  # 10:30 in São Paulo
    zone = ZoneInfo("America/Sao_Paulo")
    pt, en = Translator("pt_BR", zone), Translator("en", zone)
    assert pt.format_date(instant) == "5 de mar. de 2026"
    assert en.format_date(instant) == "Mar 5, 2026"
    assert pt.format_time(instant) == "10:30"
    assert en.format_time(instant).replace("\u202f", " ") == "10:30 AM"
    assert "10:30" in pt.format_datetime(instant, "short")
    assert pt.ngettext("%(num)s appointment", "%(num)s appointments", 2) == "2 appointments"  # untranslated: msgid


def test_language_choice_cookie_then_accept_language_then_pt_br():
    from clinic_api.web.i18n import language_of

    def request(cookies=None, accept=""):
        settings = SimpleNamespace(web=SimpleNamespace(secure_cookies=False))
        return SimpleNamespace(
            cookies=cookies or {},
            headers={"accept-language": accept},
            app=SimpleNamespace(state=SimpleNamespace(settings=settings)),
        )

    assert language_of(request()) == "pt_BR"
    assert language_of(request(accept="en-GB,en;q=0.8")) == "en"
    assert language_of(request(accept="fr-FR, pt;q=0.5")) == "pt_BR"
    assert language_of(request({"lang": "en"}, accept="pt-BR")) == "en"
    assert language_of(request({"lang": "xx"}, accept="en")) == "en"
