"""Error pages for /portal: a 404, 403, 409, 422, 500 or 503 under /portal is an HTML page in the user's language,
never the API's JSON. Other paths keep the API's answers."""

from __future__ import annotations

import logging

from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from clinic_api.web import cookies
from clinic_api.web.csrf import CSRF_FAILED
from clinic_api.web.i18n import N_, translator
from clinic_api.web.responses import keep_flash, redirect
from clinic_api.web.session import SESSION_COOKIE, SignInRequired, sign_in_url, web_user
from clinic_api.web.templating import render

log = logging.getLogger("clinic.api")

# status -> (title, explanation)
PAGES = {
    400: (N_("This request could not be understood"), N_("Go back and try again.")),
    403: (N_("You may not see this page"), N_("Your account does not give access to this page.")),
    404: (N_("Page not found"), N_("The page you asked for does not exist, or is not yours to see.")),
    405: (N_("Page not found"), N_("The page you asked for does not exist, or is not yours to see.")),
    409: (N_("This changed in the meantime"), N_("Someone changed this while you were looking: reload and try again.")),
    413: (N_("The file is too large"), N_("Go back and send a smaller file.")),
    422: (N_("Something in the request is not valid"), N_("Go back, check what you entered and try again.")),
    429: (N_("Too many attempts"), N_("Wait a few minutes and try again.")),
    500: (N_("Something went wrong on our side"), N_("We were told about it. Try again in a few minutes.")),
    503: (N_("The service is unavailable"), N_("Try again in a few moments.")),
}
# A list page's "next page" link whose cursor was altered or is another list's or account's: the list page itself
# answers (422), with this and a link to its first page, as a user who followed a link expects the list back, not an
# error page blaming what they typed.
BAD_PAGE_LINK = N_(
    "This page link is not valid: it was changed, or is another list's. Start again from the first page."
)
CSRF_PAGE = (
    N_("This form has expired"),
    N_("For your security, go back, reload the page and send the form again."),
)


def is_portal(request: Request) -> bool:
    return request.url.path == "/portal" or request.url.path.startswith("/portal/")


def error_page(
    request: Request, status_code: int, headers: dict[str, str] | None = None, detail: object = None
) -> Response:
    title, text = CSRF_PAGE if status_code == 403 and detail == CSRF_FAILED else PAGES.get(status_code, PAGES[500])
    t = translator(request)
    return render(
        request,
        "web/error.html",
        {"status": status_code, "title": t.gettext(title), "text": t.gettext(text)},
        status_code=status_code,
        headers=headers,
    )


async def sign_in_required(request: Request, error: Exception) -> Response:
    assert isinstance(error, SignInRequired)
    response: Response = redirect(request, sign_in_url(error.next_path))
    if request.headers.get("hx-request"):  # htmx would follow the 303 and swap the sign-in page into a fragment
        response = Response(status_code=200, headers={"HX-Redirect": sign_in_url(error.next_path)})
    if error.expired:
        keep_flash(response, request, translator(request).gettext("Your session has ended. Sign in again."))
        cookies.drop(response, request, SESSION_COOKIE)
    return response


async def _signed_in_if_so(request: Request) -> None:
    """Finds who is signed in, if anyone, so that an error page (a 404 from routing runs no page dependency) shows
    their navigation."""
    if getattr(request.state, "web_user", None) is None and cookies.get(request, SESSION_COOKIE):
        try:
            await web_user(request)
        except Exception:  # expired, or the database is what failed: the page without navigation
            pass


def html_500(request: Request) -> Response:
    """The 500 page main.Observe sends for a /portal request that failed unhandled."""
    try:
        return error_page(request, 500)
    except Exception:  # the page itself failed: the plainest answer rather than none
        log.exception("the error page failed")
        return Response("500 Internal Server Error", status_code=500, media_type="text/plain")


async def http_error(request: Request, error: Exception) -> Response:
    """An HTTPException under /portal as its page; elsewhere FastAPI's own JSON answer."""
    from fastapi.exception_handlers import http_exception_handler

    assert isinstance(error, StarletteHTTPException)
    if not is_portal(request):
        return await http_exception_handler(request, error)
    if error.status_code == 401:  # an API function found the account gone or revoked: sign in again
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return await sign_in_required(request, SignInRequired(path, expired=True))
    await _signed_in_if_so(request)
    return error_page(request, error.status_code, dict(error.headers or {}), error.detail)
