from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clinic_api import outbox
from clinic_api.db import add_unique
from clinic_api.deps import CurrentUser, LoginThrottleDep, SessionDep, SettingsDep, current_user, require_role
from clinic_api.errors import responses
from clinic_api.models import User, now
from clinic_api.passwords import check_password
from clinic_api.schemas import Accepted, Login, NewUser, Registration, Token, UserOut, VerifyEmail
from clinic_api.security import (
    decode_verification_token,
    hash_password,
    issue_token,
    issue_verification_token,
    verify_password,
)
from clinic_api.settings import Settings

router = APIRouter(tags=["accounts"])
EMAIL_TAKEN = "an account with this email exists"
BAD_LOGIN = "wrong email or password"
TOO_MANY = "too many failed logins; try again later"
TOO_MANY_REGISTRATIONS = "too many registrations from this address; try again later"
DISABLED = "this account is disabled"
CHECK_EMAIL = "check your email: the message sent to this address says how to go on"
INVALID_LINK = "this link is invalid, has expired or was already used; register again for a new one"


def recipient(user: User) -> dict:
    return {"recipient_email": user.email, "recipient_name": user.full_name, "user_id": user.id}


def welcome(session: Session, user: User) -> None:
    outbox.record(session, "account.created", {**recipient(user), "role": user.role})
    if user.role in ("patient", "doctor"):
        outbox.record(session, f"{user.role}.registered", recipient(user))


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
        existing = User(email=email, full_name=body.full_name, role="patient")
        session.add(existing)
        try:
            session.flush()
        except IntegrityError:  # registered concurrently: now it exists
            session.rollback()
            existing = session.scalar(select(User).where(User.email == email).with_for_update())
    if existing is not None and existing.email_verified_at is None:
        existing.full_name = body.full_name  # whoever follows the newest link chooses the password anyway
        send_verification(session, existing, settings)
    elif existing is not None:
        outbox.record(session, "account.registration_attempted", recipient(existing))
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
        {**recipient(user), "verify_url": url, "expires_hours": auth.verification_hours},
    )


@router.post("/auth/verify", response_model=UserOut, responses=responses(400))
def verify_email(body: VerifyEmail, session: SessionDep, settings: SettingsDep) -> User:
    """With the token from the emailed link, the owner of the address chooses the password: the account is usable."""
    user_id = decode_verification_token(body.token, settings.auth.jwt_secret.get_secret_value())
    user = session.get(User, user_id, with_for_update=True) if user_id is not None else None
    if user is None or user.email_verified_at is not None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, INVALID_LINK)
    check_password(body.password, user.email)
    user.password_hash, user.email_verified_at = hash_password(body.password), now()
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


@router.get("/me", response_model=UserOut)
def me(session: SessionDep, principal: CurrentUser) -> User:
    user = session.get(User, principal.id)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "this account no longer exists")
    return user


@router.get("/doctors", response_model=list[UserOut], dependencies=[Depends(current_user)])
def doctors(session: SessionDep) -> list[User]:
    return list(session.scalars(select(User).where(User.role == "doctor").order_by(User.full_name)))
