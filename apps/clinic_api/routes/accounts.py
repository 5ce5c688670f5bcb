from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_api import outbox
from clinic_api.db import add_unique
from clinic_api.deps import CurrentUser, LoginThrottleDep, SessionDep, SettingsDep, current_user, require_role
from clinic_api.models import User
from clinic_api.schemas import Login, NewUser, Registration, Token, UserOut
from clinic_api.security import hash_password, issue_token, verify_password

router = APIRouter(tags=["accounts"])
EMAIL_TAKEN = "an account with this email exists"
BAD_LOGIN = "wrong email or password"
TOO_MANY = "too many failed logins; try again later"
DISABLED = "this account is disabled"


def create_user(session: Session, body: Registration, role: str) -> User:
    user = User(
        email=body.email.lower(), full_name=body.full_name, role=role, password_hash=hash_password(body.password)
    )
    add_unique(session, user, EMAIL_TAKEN)
    recipient = {"recipient_email": user.email, "recipient_name": user.full_name, "user_id": user.id}
    outbox.record(session, "account.created", {**recipient, "role": role})
    if role in ("patient", "doctor"):
        outbox.record(session, f"{role}.registered", recipient)
    session.commit()
    return user


@router.post("/auth/register", response_model=UserOut, status_code=201)
def register(body: Registration, session: SessionDep) -> User:
    """Patients register themselves."""
    return create_user(session, body, "patient")


@router.post("/users", response_model=UserOut, status_code=201, dependencies=[Depends(require_role("admin"))])
def create_account(body: NewUser, session: SessionDep) -> User:
    """Admins create doctors, staff and other admins."""
    return create_user(session, body, body.role)


@router.post("/auth/login", response_model=Token)
def login(
    body: Login, request: Request, session: SessionDep, settings: SettingsDep, throttle: LoginThrottleDep
) -> Token:
    key = (body.email.lower(), request.client.host if request.client else "")
    if wait := throttle.retry_after(key):
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, TOO_MANY, headers={"Retry-After": str(wait)})
    user = session.scalar(select(User).where(User.email == body.email.lower()))
    if user is None or not verify_password(user.password_hash, body.password):
        throttle.failed(key)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, BAD_LOGIN)
    throttle.succeeded(key)
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
