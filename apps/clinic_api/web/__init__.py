"""The portal: server-rendered pages under /portal, served by the API process (README: why).

Each feature's pages are an APIRouter in `clinic_api/<feature>/pages.py`, registered here, one line per feature."""

from __future__ import annotations

import importlib

from fastapi import Depends, FastAPI

PAGE_ROUTERS = [
    "clinic_api.web.pages",
    "clinic_api.web.static",
    "clinic_api.exams.pages",
    "clinic_api.appointments.pages",
    "clinic_api.accounts.pages",
    "clinic_api.privacy.pages",
]


def install(app: FastAPI) -> None:
    """Mounts every page router behind the CSRF check and adds the portal's error handling. Every portal route comes
    through here, so no unsafe request under /portal goes unchecked (tests/apps/test_portal_core.py walks the
    routes)."""
    from clinic_api.web import csrf, errors
    from clinic_api.web.session import SignInRequired

    for path in PAGE_ROUTERS:
        module = importlib.import_module(path)
        app.include_router(module.router, dependencies=[Depends(csrf.protect)], include_in_schema=False)
    app.add_exception_handler(SignInRequired, errors.sign_in_required)
    app.add_exception_handler(errors.StarletteHTTPException, errors.http_error)
