"""What the account routes (routes/accounts.py) and the account pages (accounts/pages.py) share: registration, email
verification, password reset, and staff disabling accounts. Each rule lives here once; the callers turn its
HTTPExceptions into a JSON answer or a message on the page."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from fastapi import HTTPException, Request, status
from sqlalchemy import Engine, delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clinic_api import access_log, outbox, pagination
from clinic_api.errors import invalid
from clinic_api.models import AuditLog, Base, Consent, DoctorProfile, User, now
from clinic_api.passwords import check_password
from clinic_api.schemas import PasswordReset, Registration, VerifyEmail
from clinic_api.security import (
    Principal,
    decode_reset_token,
    decode_verification_token,
    hash_password,
    issue_reset_token,
    issue_verification_token,
    revoke_tokens,
    verify_password,
)
from clinic_api.settings import Settings
from clinic_api.throttle import LoginThrottle
from clinic_common.logging import request_id

log = logging.getLogger("clinic.accounts")

TOO_MANY_REGISTRATIONS = "too many registrations from this address; try again later"
TOO_MANY_RESETS = "too many password-reset requests from this address; try again later"
CHECK_EMAIL = "check your email: the message sent to this address says how to go on"
RESET_EMAIL = "if this address has an account, a link to choose a new password is on its way"
INVALID_LINK = "this link is invalid, has expired or was already used; register again for a new one"
INVALID_RESET_LINK = "this link is invalid, has expired or was already used; ask for a new one"
WRONG_PASSWORD = "current_password is wrong"
SAME_PASSWORD = "new_password must differ from the current one"
TOO_MANY_GUESSES = "too many wrong passwords for this account; try again later"
PASSWORD_RESET = "your password was changed; sign in with it (every other session was signed out)"
NOT_FOUND = "account not found"
WRONG_NOTICE = "{given!r} is not the privacy notice in force; allowed: {current!r} (GET /privacy/notice)"
NOT_YOURS_TO_DISABLE = "staff may disable or enable patient and doctor accounts only"
NOT_YOURSELF = "you cannot disable your own account"
VERIFY_PATH = "/portal/verify-email"
RESET_PATH = "/portal/reset-password"


def too_many(detail: str, wait: int) -> HTTPException:
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail, headers={"Retry-After": str(wait)})


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


def link(settings: Settings, path: str, token: str) -> str:
    # In the fragment: a browser never sends it, so it stays out of access logs (ours and the ALB's) and Referer
    # headers; the page's script moves it into the form it posts.
    return f"{settings.public_url.rstrip('/')}{path}#token={token}"


def purge_unconfirmed(session: Session, settings: Settings) -> int:
    """Deletes self-registered accounts whose link was never followed within `auth.unconfirmed_days`, and that no
    row refers to (staff may have filled in a profile or booked for one). An account with `email_verified_at` set is
    never touched. Returns how many went; the caller commits."""
    cutoff = datetime.now(UTC) - timedelta(days=settings.auth.unconfirmed_days)
    # Every foreign key to users, whichever feature's table holds it (new tables included).
    references = [
        fk.parent
        for table in Base.metadata.tables.values()
        for fk in table.foreign_keys
        if fk.column.table is User.__table__
    ]
    purged = session.execute(
        delete(User).where(
            User.email_verified_at.is_(None),
            User.created_at < cutoff,
            *(~exists().where(column == User.id) for column in references),
        )
    )
    return purged.rowcount  # type: ignore[attr-defined]  # a DML result has a row count


def register_patient(
    session: Session, settings: Settings, throttle: LoginThrottle, body: Registration, client: str
) -> None:
    """A patient registers: a new address gets the link to choose a password; one with an account gets a note that
    someone tried; an unconfirmed one gets a new link, and nothing of its account changes (the name typed now may be
    a stranger's). The same for the caller in every case; 429 past the client address's limit."""
    email = body.email.lower()
    keys = throttle.registration_keys(email, client)
    if wait := throttle.retry_after(session, {"register-client": keys["register-client"]}):
        raise too_many(TOO_MANY_REGISTRATIONS, wait)
    # Past its limit an address gets no more email for a while; the answer does not change.
    mailbox_full = throttle.retry_after(session, {"register-email": keys["register-email"]}) > 0
    throttle.count(session, keys)
    if mailbox_full:
        return
    purge_unconfirmed(session, settings)
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
        send_verification(session, existing, settings)
    elif existing is not None:
        outbox.record(session, "account.registration_attempted", outbox.recipient(existing))
    session.commit()


def send_verification(session: Session, user: User, settings: Settings) -> None:
    session.flush()  # the id, for the token
    auth = settings.auth
    token = issue_verification_token(user, auth.jwt_secret.get_secret_value(), auth.verification_hours)
    outbox.record(
        session,
        "account.verification_requested",
        {
            **outbox.recipient(user),
            "verify_url": link(settings, VERIFY_PATH, token),
            "expires_hours": auth.verification_hours,
        },
    )


def confirm_email(session: Session, settings: Settings, body: VerifyEmail, request: Request) -> User:
    """With the token from the emailed link, the owner of the address chooses the password and accepts the privacy
    notice in force: the consent is recorded, the account is usable. 400 for a bad, expired or used link."""
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


def ask_for_password_reset(session: Session, throttle: LoginThrottle, email: str, client: str) -> bool:
    """Counts a reset request; whether an email may go to `email` now (False past its limit). 429 past the client
    address's limit. Says nothing about whether the address has an account: the caller answers the same either way
    and looks the address up only after answering (send_reset_link), so the time taken tells nothing either."""
    keys = throttle.reset_keys(email, client)
    if wait := throttle.retry_after(session, {"reset-client": keys["reset-client"]}):
        raise too_many(TOO_MANY_RESETS, wait)
    mailbox_full = throttle.retry_after(session, {"reset-email": keys["reset-email"]}) > 0
    throttle.count(session, keys)
    return not mailbox_full


def send_reset_link(engine: Engine, settings: Settings, email: str) -> None:
    """Run after the answer has gone (a background task). An active account gets the reset link; one whose owner
    never chose a password, a new verification link instead (choosing it there comes with the privacy notice); an
    unknown, disabled or erased one, nothing."""
    try:
        with Session(engine, expire_on_commit=False) as session:
            user = session.scalar(select(User).where(User.email == email.lower()))
            if user is None or user.disabled_at is not None or user.erased_at is not None:
                return
            if user.email_verified_at is None:
                send_verification(session, user, settings)
            else:
                auth = settings.auth
                token = issue_reset_token(user, auth.jwt_secret.get_secret_value(), auth.reset_minutes)
                outbox.record(
                    session,
                    "account.password_reset_requested",
                    {
                        **outbox.recipient(user),
                        "reset_url": link(settings, RESET_PATH, token),
                        "expires_minutes": auth.reset_minutes,
                    },
                )
            session.commit()
    except Exception:  # the caller has its answer already: nobody else would see this
        log.exception("password reset email not queued")


def reset_password(session: Session, settings: Settings, body: PasswordReset) -> User:
    """The owner of the address, with the emailed token, chooses a new password (the registration policy). The
    token's account version goes up: this link, every other one sent before and every access token and portal
    session of the account stop working. 400 for a bad, expired or used link."""
    claims = decode_reset_token(body.token, settings.auth.jwt_secret.get_secret_value())
    user = session.get(User, claims[0], with_for_update=True) if claims is not None else None
    if (
        claims is None
        or user is None
        or (user.token_version or 0) != claims[1]
        or user.email_verified_at is None
        or user.disabled_at is not None
        or user.erased_at is not None
    ):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, INVALID_RESET_LINK)
    check_password(body.password, user.email)
    user.password_hash = hash_password(body.password)
    revoke_tokens(user)
    outbox.record(session, "account.updated", {**outbox.recipient(user), "change": "password"})
    session.commit()
    return user


def password_guessed(session: Session, throttle: LoginThrottle, client: str, user: User, password: str) -> bool:
    """Whether `password` is `user`'s, checked as a sign-in is: 429 while the account or the client has had too many
    failures, and a wrong one counted as a failed sign-in (committed). Where a signed-in caller confirms with their
    password (a change, an erasure), a stolen token or session then cannot guess it faster than the sign-in form."""
    keys = throttle.keys(user.email, client)
    if wait := throttle.retry_after(session, keys):
        raise too_many(TOO_MANY_GUESSES, wait)
    if verify_password(user.password_hash, password):
        return True
    throttle.count(session, keys)
    return False


def change_password(
    session: Session, throttle: LoginThrottle, client: str, user_id: int, current: str, new: str
) -> User:
    """The signed-in owner changes their password, giving the current one: a session or token left on a shared
    computer cannot take the account over. The account's version goes up, so every access token and portal session,
    this one included, stops working. 400 for a wrong current password (counted as a failed sign-in,
    `password_guessed`) or an unchanged one; 422 naming `new_password` for one the policy refuses."""
    user = session.get_one(User, user_id, with_for_update=True)
    if not password_guessed(session, throttle, client, user, current):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, WRONG_PASSWORD)
    if new == current:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, SAME_PASSWORD)
    check_password(new, user.email, "new_password")
    user.password_hash = hash_password(new)
    revoke_tokens(user)
    outbox.record(session, "account.updated", {**outbox.recipient(user), "change": "password"})
    session.commit()
    throttle.succeeded(session, throttle.keys(user.email, client))
    return user


def account_page(
    session: Session, request: Request, caller: Principal, role: str | None, limit: int, cursor: str | None
) -> tuple[list[User], str | None]:
    """Accounts by id, `limit` from `cursor` (pagination.start: a 422 naming `cursor` unless this list gave it), and
    the next page's cursor; a page that shows patients is in each one's access log. The role filter is part of the
    list: a cursor of one role's walk is refused on another's (or on the unfiltered list)."""
    scope = f"users?role={role}" if role else "users"
    query = select(User).order_by(User.id).limit(limit + 1)
    if role:
        query = query.where(User.role == role)
    if after := pagination.start(request, scope, caller.id, cursor, (int,)):
        query = query.where(User.id > after[0])
    rows = list(session.scalars(query))
    page = rows[:limit]
    access_log.record(session, request, caller.id, "accounts.list", [u.id for u in page if u.role == "patient"])
    session.commit()
    return page, pagination.next_cursor(request, scope, caller.id, rows, limit, lambda user: [user.id])


def disable_refusal(caller: Principal, account_id: int, account_role: str) -> HTTPException | None:
    """Why `caller` may not disable or enable this account (None: they may): nobody their own, staff only patients and
    doctors. The pages ask it to offer the buttons; managed_account enforces it."""
    if account_id == caller.id:
        return HTTPException(status.HTTP_409_CONFLICT, NOT_YOURSELF)
    if caller.role == "staff" and account_role not in ("patient", "doctor"):
        return HTTPException(status.HTTP_403_FORBIDDEN, NOT_YOURS_TO_DISABLE)
    return None


def managed_account(session: Session, account_id: int, caller: Principal) -> User:
    account = session.get(User, account_id)
    if account is None or account.erased_at is not None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    if refusal := disable_refusal(caller, account.id, account.role):
        raise refusal
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


def disable_or_enable(session: Session, request: Request, account_id: int, caller: Principal, disabled: bool) -> User:
    """Staff disable or enable patients and doctors, admins anyone but themselves; doing it twice changes nothing."""
    account = managed_account(session, account_id, caller)
    if (account.disabled_at is not None) != disabled:
        set_disabled(session, request, account, caller, disabled)
    return account


def doctors_overview(
    session: Session, request: Request, caller: Principal, limit: int, cursor: str | None
) -> tuple[list[tuple[User, DoctorProfile | None]], str | None]:
    """Every doctor's account (disabled ones too, not erased) with their profile (specialty, CRM), by id as GET
    /doctors, `limit` from `cursor` (pagination.start), and the next page's cursor."""
    query = (
        select(User, DoctorProfile)
        .outerjoin(DoctorProfile, DoctorProfile.user_id == User.id)
        .where(User.role == "doctor", User.erased_at.is_(None))
        .order_by(User.id)
        .limit(limit + 1)
    )
    if after := pagination.start(request, "staff/doctors", caller.id, cursor, (int,)):
        query = query.where(User.id > after[0])
    rows: list[tuple[User, DoctorProfile | None]] = [(user, profile) for user, profile in session.execute(query)]
    following = pagination.next_cursor(request, "staff/doctors", caller.id, rows, limit, lambda row: [row[0].id])
    return rows[:limit], following
