"""The core's pages: `/` and `/portal/` (to the role's home), sign-in, sign-out and the language switch."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from clinic_api.deps import LoginThrottleDep, SessionDep
from clinic_api.routes.accounts import authenticate
from clinic_api.schemas import Login
from clinic_api.throttle import LoginThrottle
from clinic_api.web import cookies, session
from clinic_api.web.forms import read_form
from clinic_api.web.i18n import LANGUAGE_COOKIE, LANGUAGES, translator
from clinic_api.web.responses import redirect
from clinic_api.web.session import SESSION_COOKIE, WebUser, safe_next
from clinic_api.web.templating import render

router = APIRouter(include_in_schema=False)

HOMES = {
    "patient": "/portal/appointments",
    "doctor": "/portal/agenda",
    "staff": "/portal/staff/doctors",
    "admin": "/portal/staff/doctors",
}
YEAR = 365 * 24 * 3600


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/portal/", status_code=303)


@router.get("/portal/", name="portal_home")
async def home(user: WebUser) -> RedirectResponse:
    return RedirectResponse(HOMES[user.role], status_code=303)


@router.get("/portal/sign-in", name="sign_in")
async def sign_in_page(request: Request, next: str = "") -> Response:
    if cookies.get(request, SESSION_COOKIE):  # signed in already (checked, not trusted): straight on
        try:
            await session.web_user(request)
            return RedirectResponse(safe_next(next), status_code=303)
        except session.SignInRequired:
            pass
    return render(request, "web/sign_in.html", {"values": {"next": next}, "errors": {}})


def _sign_in(db: Session, throttle: LoginThrottle, request: Request, email: str, password: str) -> str:
    user = authenticate(db, throttle, request, email, password)
    session_id = session.start(db, request, user)
    db.commit()
    return session_id


@router.post("/portal/sign-in")
async def sign_in(request: Request, db: SessionDep, throttle: LoginThrottleDep) -> Response:
    """The API's login (authenticate: the same throttle, lockout and timing), then a new session."""
    form = await read_form(request, Login)
    values = {"email": form.values.get("email", ""), "next": form.values.get("next", "")}
    t = translator(request)
    status_code = 422
    if form.data is not None:
        try:
            session_id = await run_in_threadpool(_sign_in, db, throttle, request, form.data.email, form.data.password)
        except HTTPException as refused:
            status_code = refused.status_code
            messages = {
                401: t.gettext("Wrong email or password."),
                403: t.gettext("This account is disabled. Contact the clinic."),
                429: t.gettext("Too many failed attempts. Wait a few minutes and try again."),
            }
            form.error("", messages.get(refused.status_code, messages[401]))
        else:
            response = redirect(request, safe_next(values["next"]))
            cookies.put(response, request, SESSION_COOKIE, session_id)
            return response
    return render(request, "web/sign_in.html", {"values": values, "errors": form.errors}, status_code=status_code)


@router.post("/portal/sign-out", name="sign_out")
def sign_out(request: Request, db: SessionDep) -> Response:
    session.end(db, request)
    db.commit()
    response = redirect(request, "/portal/sign-in", flash=translator(request).gettext("You have signed out."))
    cookies.drop(response, request, SESSION_COOKIE)
    return response


@router.post("/portal/language", name="language")
async def language(request: Request) -> Response:
    posted = await request.form()
    chosen, back = posted.get("language"), posted.get("next")
    if chosen not in LANGUAGES:
        raise HTTPException(422, f"language: {chosen!r}; allowed: {LANGUAGES}")
    response = redirect(request, safe_next(back if isinstance(back, str) else None))
    cookies.put(response, request, LANGUAGE_COOKIE, str(chosen), max_age=YEAR)
    return response
