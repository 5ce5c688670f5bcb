"""The portal's languages: Babel gettext catalogs, one per feature package (`<feature>/locale/<lang>/LC_MESSAGES/
messages.po`), read and merged when the process starts. The .po files are the only source: they are compiled in
memory here (babel.messages.mofile), so no compiled .mo file is committed and no build step exists to forget.

Strings are marked in English (the msgid); pt_BR is the default language and every marked string needs its pt_BR
translation (tests/apps/test_portal_i18n.py fails otherwise); en falls back to the msgid. Extraction, to find new
strings: `pybabel extract -F apps/clinic_api/babel.cfg -o /tmp/messages.pot apps/clinic_api/<feature>`, then
`pybabel update -i /tmp/messages.pot -d apps/clinic_api/<feature>/locale` (apps/README.md, "Portal translations")."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from babel import Locale
from babel import dates as babel_dates
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from starlette.requests import Request

from clinic_api.web import cookies

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ("pt_BR", "en")
DEFAULT_LANGUAGE = "pt_BR"
LANGUAGE_COOKIE = "lang"
HTML_LANG = {"pt_BR": "pt-BR", "en": "en"}
"""BCP 47 tags, for `<html lang>`."""


def N_(message: str) -> str:
    """Marks a constant for extraction; translate it where it is shown (`t.gettext(CONSTANT)`)."""
    return message


def catalog_paths(language: str) -> list[Path]:
    """Every feature package's catalog for `language`, the core's first, then by package name (not the file system's
    order, which differs between machines)."""
    paths = PACKAGE_ROOT.glob(f"*/locale/{language}/LC_MESSAGES/messages.po")
    return sorted(paths, key=lambda p: (p.parts[-5] != "web", p.parts[-5]))


def _compile(path: Path, language: str) -> Translations:
    with path.open("rb") as po:
        catalog = read_po(po, locale=language)
    mo = io.BytesIO()
    write_mo(mo, catalog)  # fuzzy entries left out, as msgfmt does
    mo.seek(0)
    return Translations(mo, domain="messages")


@functools.cache
def translations(language: str) -> Translations:
    """All catalogs of `language` merged into one (read once per process). The core's comes first: its header's
    Plural-Forms rule (pt_BR: `nplurals=2; plural=(n > 1)`) is the one that counts."""
    first, *others = catalog_paths(language)
    merged = _compile(first, language)
    for path in others:
        merged.merge(_compile(path, language))
    return merged


def language_of(request: Request) -> str:
    """The `lang` cookie (POST /portal/language), else the browser's Accept-Language, else pt_BR."""
    chosen = cookies.get(request, LANGUAGE_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    for item in request.headers.get("accept-language", "").split(","):
        tag = item.split(";")[0].strip().lower()
        if tag.startswith("pt"):
            return "pt_BR"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Translator:
    """A request's language: its messages and its way of writing dates, in the clinic's time zone."""

    language: str
    zone: Any  # zoneinfo.ZoneInfo

    @property
    def locale(self) -> Locale:
        return Locale.parse(self.language)

    @property
    def html_lang(self) -> str:
        return HTML_LANG[self.language]

    def gettext(self, message: str, **variables: Any) -> str:
        """The translation; `%(name)s` placeholders filled from `variables` (after translating, so translators
        move them)."""
        text = translations(self.language).gettext(message)
        return text % variables if variables else text

    def ngettext(self, singular: str, plural: str, n: int, **variables: Any) -> str:
        text = translations(self.language).ngettext(singular, plural, n)
        return text % {"num": n, **variables}

    def format_datetime(self, value: datetime, format: str = "medium") -> str:
        return babel_dates.format_datetime(value, format, tzinfo=self.zone, locale=self.language)

    def format_date(self, value: date | datetime, format: str = "medium") -> str:
        if isinstance(value, datetime):
            value = value.astimezone(self.zone).date()
        return babel_dates.format_date(value, format, locale=self.language)

    def format_time(self, value: datetime | time, format: str = "short") -> str:
        if isinstance(value, datetime):
            return babel_dates.format_time(value, format, tzinfo=self.zone, locale=self.language)
        return babel_dates.format_time(value, format, locale=self.language)  # a wall-clock time: no zone to apply


def translator(request: Request) -> Translator:
    """`t = translator(request)`; `t.gettext("...")`, `t.ngettext(...)`, `t.format_datetime(...)`."""
    cached = getattr(request.state, "translator", None)
    if cached is None:
        cached = Translator(language_of(request), request.app.state.settings.agenda.zone)
        request.state.translator = cached
    return cached
