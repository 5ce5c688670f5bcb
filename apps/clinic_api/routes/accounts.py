from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clinic_api import access_log, outbox
from clinic_api.db import add_unique
from clinic_api.deps import (
    CurrentUser,
    LoginThrottleDep,
    PathId,
    SessionDep,
    SettingsDep,
    current_user,
    require_role,
)
from clinic_api.errors import errors, invalid, responses
from clinic_api.models import AuditLog, Consent, User, now
from clinic_api.passwords import check_password
from clinic_api.schemas import Accepted, AccountPage, Login, NewUser, Registration, Token, UserOut, VerifyEmail
from clinic_api.security import (
    Principal,
    decode_verification_token,
    hash_password,
    issue_token,
    issue_verification_token,
    verify_password,
)
from clinic_api.settings import Settings
from clinic_common.logging import request_id

router = APIRouter(tags=["accounts"])
EMAIL_TAKEN = "an account with this email exists"
BAD_LOGIN = "wrong email or password"
TOO_MANY = "too many failed logins; try again later"
TOO_MANY_REGISTRATIONS = "too many registrations from this address; try again later"
DISABLED = "this account is disabled"
CHECK_EMAIL = "check your email: the message sent to this address says how to go on"
INVALID_LINK = "this link is invalid, has expired or was already used; register again for a new one"
GONE = "this account no longer exists"
NOT_FOUND = "account not found"
WRONG_NOTICE = "{given!r} is not the privacy notice in force; allowed: {current!r} (GET /privacy/notice)"
NOT_YOURS_TO_DISABLE = "staff may disable or enable patient and doctor accounts only"
NOT_YOURSELF = "you cannot disable your own account"


def welcome(session: Session, user: User) -> None:
    outbox.record(session, "account.created", {**outbox.recipient(user), "role": user.role})
    if user.role in ("patient", "doctor"):
        outbox.record(session, f"{user.role}.registered", outbox.recipient(user))


def record_consent(
    session: Session, user: User, notice_version: str, purposes: Sequence[str], request: Request
) -> Consent:
    consent = Consent(
        user_id=user.id,
        notice_version=notice_version,
        purposes=list(purposes),
        client_ip=access_log.client_ip(request),
    )
    session.add(consent)
    return consent


def check_notice(version: str, settings: Settings) -> None:
    """422 naming `consent.notice_version` unless it is the privacy notice in force."""
    if version != settings.privacy.notice_version:
        problem = WRONG_NOTICE.format(given=version, current=settings.privacy.notice_version)
        raise invalid("consent.notice_version", problem)


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
    """
    email = body.email.lower()
    keys = throttle.registration_keys(email, request.client.host if request.client else "")
    if wait := throttle.retry_after(session, {"register-client": keys["register-client"]}):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, TOO_MANY_REGISTRATIONS, headers={"Retry-After": str(wait)}
        )
    # Past its limit an address gets no more email for a while; the answer does not change.
    mailbox_full = throttle.retry_after(session, {"register-email": keys["register-email"]}) > 0
    throttle.count(session, keys)
    if mailbox_full:
        return Accepted(detail=CHECK_EMAIL)
    existing = session.scalar(select(User).where(User.email == email).with_for_update())
    if existing is None:
        existing = User(email=email, full_name=body.full_name, role="patient", language=body.language)
        session.add(existing)
        try:
            session.flush()
        except IntegrityError:  # registered concurrently: now it exists
            session.rollback()
            existing = session.scalar(select(User).where(User.email == email).with_for_update())
    if existing is not None and existing.email_verified_at is None:
        # whoever follows the newest link chooses the password anyway
        existing.full_name, existing.language = body.full_name, body.language
        send_verification(session, existing, settings)
    elif existing is not None:
        outbox.record(session, "account.registration_attempted", outbox.recipient(existing))
    session.commit()
    return Accepted(detail=CHECK_EMAIL)


def send_verification(session: Session, user: User, settings: Settings) -> None:
    session.flush()  # the id, for the token
    auth = settings.auth
    token = issue_verification_token(user, auth.jwt_secret.get_secret_value(), auth.verification_hours)
    # In the fragment: a browser never sends it, so it stays out of access logs and Referer headers.
    url = f"{settings.public_url.rstrip('/')}/verify-email#token={token}"
    outbox.record(
        session,
        "account.verification_requested",
        {**outbox.recipient(user), "verify_url": url, "expires_hours": auth.verification_hours},
    )


@router.post("/auth/verify", response_model=UserOut, responses=responses(400))
def verify_email(body: VerifyEmail, request: Request, session: SessionDep, settings: SettingsDep) -> User:
    """With the token from the emailed link, the owner of the address chooses the password and accepts the privacy
    notice in force (GET /privacy/notice; `care` at least): the consent is recorded, the account is usable."""
    check_notice(body.consent.notice_version, settings)
    user_id = decode_verification_token(body.token, settings.auth.jwt_secret.get_secret_value())
    user = session.get(User, user_id, with_for_update=True) if user_id is not None else None
    if user is None or user.email_verified_at is not None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, INVALID_LINK)
    check_password(body.password, user.email)
    user.password_hash, user.email_verified_at = hash_password(body.password), now()
    record_consent(session, user, body.consent.notice_version, body.consent.purposes, request)
    welcome(session, user)
    session.commit()
    return user


@router.post("/auth/login", response_model=Token, responses=responses(401, 403, 429))
def login(
    body: Login, request: Request, session: SessionDep, settings: SettingsDep, throttle: LoginThrottleDep
) -> Token:
    keys = throttle.keys(body.email, request.client.host if request.client else "")
    if wait := throttle.retry_after(session, keys):
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, TOO_MANY, headers={"Retry-After": str(wait)})
    user = session.scalar(select(User).where(User.email == body.email.lower()))
    # One argon2 verification whether or not the account exists (verify_password): the time taken tells nothing.
    if not verify_password(user.password_hash if user else None, body.password) or user is None:
        throttle.count(session, keys)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, BAD_LOGIN)
    throttle.succeeded(session, keys)
    if user.disabled_at is not None:  # said only to whoever knows the password
        raise HTTPException(status.HTTP_403_FORBIDDEN, DISABLED)
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


@router.get("/doctors", response_model=list[UserOut], dependencies=[Depends(current_user)])
def doctors(session: SessionDep) -> list[User]:
    return list(
        session.scalars(select(User).where(User.role == "doctor", User.disabled_at.is_(None)).order_by(User.full_name))
    )


@router.get(
    "/users",
    response_model=AccountPage,
    dependencies=[Depends(require_role("staff", "admin"))],
)
def list_accounts(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    role: Annotated[str | None, Query(pattern="^(patient|doctor|staff|admin)$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="next_cursor of the previous page")] = None,
) -> AccountPage:
    """Accounts by id; a page that shows patients is in each one's access log."""
    query = select(User).order_by(User.id).limit(limit + 1)
    if role:
        query = query.where(User.role == role)
    if cursor:
        query = query.where(User.id >= cursor)
    rows = list(session.scalars(query))
    page, more = rows[:limit], rows[limit:]
    access_log.record(session, request, user.id, "accounts.list", [u.id for u in page if u.role == "patient"])
    session.commit()
    return AccountPage(items=[UserOut.model_validate(u) for u in page], next_cursor=more[0].id if more else None)


def managed_account(session: Session, account_id: int, caller: Principal) -> User:
    account = session.get(User, account_id)
    if account is None or account.erased_at is not None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    if account.id == caller.id:
        raise HTTPException(status.HTTP_409_CONFLICT, NOT_YOURSELF)
    if caller.role == "staff" and account.role not in ("patient", "doctor"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, NOT_YOURS_TO_DISABLE)
    return account


def set_disabled(session: Session, request: Request, account: User, caller: Principal, disabled: bool) -> None:
    """The one place an account is disabled or enabled: the change, its audit row and the owner's email commit
    together."""
    account.disabled_at = datetime.now(UTC) if disabled else None
    change = "disabled" if disabled else "enabled"
    session.add(
        AuditLog(
            user_id=caller.id,
            action=f"account.{change}",
            outcome="done",
            request_id=request_id.get(),
            subject_id=account.id,
            client_ip=access_log.client_ip(request),
        )
    )
    outbox.record(session, "account.updated", {**outbox.recipient(account), "change": change})
    session.commit()


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
    account = managed_account(session, account_id, caller)
    if account.disabled_at is None:
        set_disabled(session, request, account, caller, disabled=True)
    return account


@router.post(
    "/users/{account_id}/enable",
    response_model=UserOut,
    dependencies=[Depends(require_role("staff", "admin"))],
    responses=ACCOUNT_ERRORS,
)
def enable(account_id: PathId, request: Request, session: SessionDep, caller: CurrentUser) -> User:
    account = managed_account(session, account_id, caller)
    if account.disabled_at is not None:
        set_disabled(session, request, account, caller, disabled=False)
    return account
