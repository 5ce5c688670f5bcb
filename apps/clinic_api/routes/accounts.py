from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Query, Request, Response, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_api import pagination
from clinic_api.accounts.service import (
    CHECK_EMAIL,
    INVALID_LINK,
    INVALID_RESET_LINK,
    NOT_FOUND,
    NOT_YOURS_TO_DISABLE,
    NOT_YOURSELF,
    PASSWORD_RESET,
    RESET_EMAIL,
    TOO_MANY_REGISTRATIONS,
    TOO_MANY_RESETS,
    WRONG_NOTICE,
    account_page,
    ask_for_password_reset,
    check_notice,
    confirm_email,
    disable_or_enable,
    managed_account,
    record_consent,
    register_patient,
    reset_password,
    send_reset_link,
    send_verification,
    set_disabled,
    welcome,
)
from clinic_api.db import add_unique
from clinic_api.deps import (
    CurrentUser,
    EngineDep,
    LoginThrottleDep,
    PathId,
    SessionDep,
    SettingsDep,
    current_user,
    require_role,
)
from clinic_api.errors import errors, responses
from clinic_api.models import User, now
from clinic_api.passwords import check_password
from clinic_api.schemas import (
    Accepted,
    Login,
    NewUser,
    PasswordReset,
    PasswordResetRequest,
    Registration,
    Token,
    UserOut,
    VerifyEmail,
)
from clinic_api.security import hash_password, issue_token, verify_password
from clinic_api.throttle import LoginThrottle, client_of

__all__ = [  # the rules live in clinic_api.accounts.service; other modules and tests import them from here too
    "CHECK_EMAIL",
    "INVALID_LINK",
    "INVALID_RESET_LINK",
    "NOT_YOURS_TO_DISABLE",
    "PASSWORD_RESET",
    "RESET_EMAIL",
    "TOO_MANY_REGISTRATIONS",
    "TOO_MANY_RESETS",
    "WRONG_NOTICE",
    "check_notice",
    "managed_account",
    "record_consent",
    "send_verification",
    "set_disabled",
]

router = APIRouter(tags=["accounts"])
EMAIL_TAKEN = "an account with this email exists"
BAD_LOGIN = "wrong email or password"
TOO_MANY = "too many failed logins; try again later"
DISABLED = "this account is disabled"
GONE = "this account no longer exists"


@router.post(
    "/users",
    response_model=UserOut,
    status_code=201,
    dependencies=[Depends(require_role("admin"))],
    responses=responses(409),
)
def create_account(body: NewUser, session: SessionDep) -> User:
    """Admins create doctors, staff and other admins (usable at once: the admin vouches for the address)."""
    check_password(body.password, body.email)
    user = User(
        email=body.email.lower(),
        full_name=body.full_name,
        role=body.role,
        password_hash=hash_password(body.password),
        email_verified_at=now(),
        language=body.language,
    )
    add_unique(session, user, EMAIL_TAKEN)
    welcome(session, user)
    session.commit()
    return user


@router.post("/auth/register", response_model=Accepted, status_code=202, responses=responses(429))
def register(
    body: Registration, request: Request, session: SessionDep, settings: SettingsDep, throttle: LoginThrottleDep
) -> Accepted:
    """Patients register themselves. The answer is the same whether or not the email has an account (apps/README.md:
    why): the address gets a link to choose a password, or, if it has an account already, a note that someone tried.
    Registering again before following the link sends a new one and changes nothing else."""
    register_patient(session, settings, throttle, body, client_of(request))
    return Accepted(detail=CHECK_EMAIL)


@router.post("/auth/verify", response_model=UserOut, responses=errors(r400=INVALID_LINK))
def verify_email(body: VerifyEmail, request: Request, session: SessionDep, settings: SettingsDep) -> User:
    """With the token from the emailed link, the owner of the address chooses the password and accepts the privacy
    notice in force (GET /privacy/notice; `care` at least): the consent is recorded, the account is usable."""
    return confirm_email(session, settings, body, request)


@router.post("/auth/password-reset", response_model=Accepted, status_code=202, responses=errors(r429=TOO_MANY_RESETS))
def request_password_reset(
    body: PasswordResetRequest,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    engine: EngineDep,
    settings: SettingsDep,
    throttle: LoginThrottleDep,
) -> Accepted:
    """Emails the account's owner a link (valid `auth.reset_minutes`, used once) to choose a new password. The answer
    is the same, and leaves as soon, whether or not the address has an account: the address is looked up after it."""
    if ask_for_password_reset(session, throttle, body.email, client_of(request)):
        background.add_task(send_reset_link, engine, settings, body.email)
    return Accepted(detail=RESET_EMAIL)


@router.post("/auth/password-reset/confirm", response_model=Accepted, responses=errors(r400=INVALID_RESET_LINK))
def confirm_password_reset(body: PasswordReset, session: SessionDep, settings: SettingsDep) -> Accepted:
    """With the token from the emailed link, a new password (the registration policy: 422 naming `password`). Every
    token and portal session of the account ends; the owner is emailed that the password changed."""
    reset_password(session, settings, body)
    return Accepted(detail=PASSWORD_RESET)


def authenticate(session: Session, throttle: LoginThrottle, request: Request, email: str, password: str) -> User:
    """The account whose password this is; 429 while throttled, 401 for a wrong email or password (the same answer,
    in the same time, either way), 403 for a disabled account. Shared by POST /auth/login and the portal's sign-in.
    Commits the throttle's counts (a failure's too: it must outlive the 401)."""
    keys = throttle.keys(email, client_of(request))
    if wait := throttle.retry_after(session, keys):
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, TOO_MANY, headers={"Retry-After": str(wait)})
    user = session.scalar(select(User).where(User.email == email.lower()))
    # One argon2 verification whether or not the account exists (verify_password): the time taken tells nothing.
    if not verify_password(user.password_hash if user else None, password) or user is None:
        throttle.count(session, keys)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, BAD_LOGIN)
    throttle.succeeded(session, keys)
    if user.disabled_at is not None:  # said only to whoever knows the password
        raise HTTPException(status.HTTP_403_FORBIDDEN, DISABLED)
    return user


@router.post("/auth/login", response_model=Token, responses=responses(401, 403, 429))
def login(
    body: Login, request: Request, session: SessionDep, settings: SettingsDep, throttle: LoginThrottleDep
) -> Token:
    user = authenticate(session, throttle, request, body.email, body.password)
    auth = settings.auth
    return Token(
        access_token=issue_token(user, auth.jwt_secret.get_secret_value(), auth.token_minutes),
        expires_in=auth.token_minutes * 60,
    )


@router.get("/me", response_model=UserOut, responses=errors(r401=GONE))
def me(session: SessionDep, principal: CurrentUser) -> User:
    user = session.get(User, principal.id)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, GONE)
    return user


@router.get(
    "/doctors", response_model=list[UserOut], dependencies=[Depends(current_user)], responses=pagination.NEXT_PAGE
)
def doctors(
    request: Request,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    limit: pagination.Limit = pagination.PAGE_DEFAULT,
    cursor: pagination.Cursor = None,
) -> list[User]:
    """The doctors who can be booked, by id (stable whatever a name becomes, and no name in the cursor), a page at a
    time (the next page's URL in the `Link` header)."""
    query = select(User).where(User.role == "doctor", User.disabled_at.is_(None)).order_by(User.id).limit(limit + 1)
    if after := pagination.start(request, "doctors", user.id, cursor, (int,)):
        query = query.where(User.id > after[0])
    rows = list(session.scalars(query))
    pagination.link_next(
        request, response, pagination.next_cursor(request, "doctors", user.id, rows, limit, lambda d: [d.id])
    )
    return rows[:limit]


@router.get(
    "/users",
    response_model=list[UserOut],
    dependencies=[Depends(require_role("staff", "admin"))],
    responses=pagination.NEXT_PAGE,
)
def list_accounts(
    request: Request,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    role: Annotated[str | None, Query(pattern="^(patient|doctor|staff|admin)$")] = None,
    limit: pagination.Limit = pagination.PAGE_DEFAULT,
    cursor: pagination.Cursor = None,
) -> list[User]:
    """Accounts by id, a page at a time (the next page's URL in the `Link` header, `role` kept; a cursor of one
    role's walk is refused on another's); a page that shows patients is in each one's access log."""
    page, following = account_page(session, request, user, role, limit, cursor)
    pagination.link_next(request, response, following)
    return page


# document_errors (errors.py) adds 401, 403, 422 and 503.
ACCOUNT_ERRORS = errors(r404=NOT_FOUND, r409=NOT_YOURSELF)


@router.post(
    "/users/{account_id}/disable",
    response_model=UserOut,
    dependencies=[Depends(require_role("staff", "admin"))],
    responses=ACCOUNT_ERRORS,
)
def disable(account_id: PathId, request: Request, session: SessionDep, caller: CurrentUser) -> User:
    """The account can no longer sign in (staff: patients and doctors; admins: anyone but themselves)."""
    return disable_or_enable(session, request, account_id, caller, disabled=True)


@router.post(
    "/users/{account_id}/enable",
    response_model=UserOut,
    dependencies=[Depends(require_role("staff", "admin"))],
    responses=ACCOUNT_ERRORS,
)
def enable(account_id: PathId, request: Request, session: SessionDep, caller: CurrentUser) -> User:
    return disable_or_enable(session, request, account_id, caller, disabled=False)
