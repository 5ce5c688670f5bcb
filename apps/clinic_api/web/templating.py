"""Jinja2 templates: `render(request, "appointments/list.html", {...})`.

Templates live in each package's `templates/` folder, namespaced by a folder of the package's name
(`clinic_api/<feature>/templates/<feature>/*.html`), and extend `web/base.html`. Autoescaping is on for every
template. Every page gets, besides its own context: `user`, `_`/`gettext`/`ngettext` (the request's language),
`csrf_field()`, `csrf_token()`, `static(name)`, `url(name, **params)`, `format_datetime`/`format_date`/
`format_time` (the clinic's time zone), `flashes`, `lang` and `request`."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from clinic_api.web import cookies, csrf
from clinic_api.web.i18n import PACKAGE_ROOT, Translator, translator
from clinic_api.web.responses import FLASH_COOKIE, flashes
from clinic_api.web.static import static_url

_rendering: ContextVar[Translator] = ContextVar("rendering")
"""The translator of the page being rendered, for macros imported without context (web/forms.html)."""


def _gettext(message: str, **variables: Any) -> str:
    return _rendering.get().gettext(message, **variables)


def _ngettext(singular: str, plural: str, n: int, **variables: Any) -> str:
    return _rendering.get().ngettext(singular, plural, n, **variables)


def template_dirs() -> list[Path]:
    return sorted(p for p in PACKAGE_ROOT.glob("**/templates") if p.is_dir())


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(template_dirs()),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,  # a misspelt variable fails the page's test instead of rendering blank
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.policies["ext.i18n.trimmed"] = True
    env.globals.update(static=static_url, _=_gettext, gettext=_gettext, ngettext=_ngettext)
    env.newstyle_gettext = True  # type: ignore[attr-defined]  # {% trans %} passes its variables to gettext
    return env


def context_for(request: Request, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    t = translator(request)
    return {
        "request": request,
        "user": getattr(request.state, "web_user", None),
        "_": t.gettext,
        "gettext": t.gettext,
        "ngettext": t.ngettext,
        "lang": t.language,
        "html_lang": t.html_lang,
        "csrf_field": lambda: csrf.field(request),
        "csrf_token": lambda: csrf.token(request),
        "url": lambda name, **params: str(request.app.url_path_for(name, **params)),
        "format_datetime": t.format_datetime,
        "format_date": t.format_date,
        "format_time": t.format_time,
        "flashes": flashes(request),
        **(extra or {}),
    }


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The page `name` as an HTMLResponse. The security headers and the Content-Security-Policy are added to every
    /portal response by main.Observe; this shows waiting flashes once and sets the pre-session CSRF cookie when a
    form on the page needed one."""
    values = context_for(request, context)
    token = _rendering.set(translator(request))
    try:
        body = environment().get_template(name).render(values)
    finally:
        _rendering.reset(token)
    response = HTMLResponse(body, status_code=status_code, headers=dict(headers or {}))
    if cookies.get(request, FLASH_COOKIE):
        cookies.drop(response, request, FLASH_COOKIE)
    seed = getattr(request.state, "new_csrf_seed", None)
    if seed:
        cookies.put(response, request, csrf.PRE_SESSION_COOKIE, seed)
    return response
