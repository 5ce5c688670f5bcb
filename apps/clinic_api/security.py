"""Passwords (argon2), tokens (JWT) and the principal they carry (the dependencies routes declare are in deps.py; the
password policy in passwords.py, login throttling in throttle.py)."""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from clinic_api.models import User

ROLES = ("patient", "doctor", "staff", "admin")
INVALID_TOKEN = "missing, invalid or expired token"
FORBIDDEN = "your role may not do this"
VERIFY_EMAIL = "clinic:verify-email"  # the audience of email verification tokens
RESET_PASSWORD = "clinic:reset-password"  # the audience of password-reset tokens
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))  # same parameters as every real hash, so the same cost to verify


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches. Without a hash (no such account, or one whose owner has not chosen a password yet)
    a dummy hash is verified all the same, and fails: every login costs one argon2 verification, so how long the
    answer takes does not tell which emails have accounts."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def issue_token(user: User, secret: str, minutes: int) -> str:
    expires = datetime.now(UTC) + timedelta(minutes=minutes)
    claims = {"sub": str(user.id), "role": user.role, "ver": user.token_version or 0, "exp": expires}
    return jwt.encode(claims, secret, algorithm="HS256")


def issue_verification_token(user: User, secret: str, hours: int) -> str:
    """The emailed link's token: it lets whoever reads that mailbox choose the account's password, once. Its audience
    makes it useless as an access token (decode_token refuses any token with one)."""
    expires = datetime.now(UTC) + timedelta(hours=hours)
    return jwt.encode({"sub": str(user.id), "aud": VERIFY_EMAIL, "exp": expires}, secret, algorithm="HS256")


def decode_verification_token(token: str, secret: str) -> int | None:
    """The account id of a valid, unexpired verification token; None for anything else (an access token too)."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], audience=VERIFY_EMAIL, options={"require": ["exp", "sub", "aud"]}
        )
        return int(claims["sub"])
    except (jwt.PyJWTError, ValueError):
        return None


def issue_reset_token(user: User, secret: str, minutes: int) -> str:
    """The emailed password-reset link's token. It carries the account's token version, which the reset raises
    (revoke_tokens): used once, it and every other reset link sent before stop working; a password changed any other
    way ends them too."""
    expires = datetime.now(UTC) + timedelta(minutes=minutes)
    claims = {"sub": str(user.id), "aud": RESET_PASSWORD, "ver": user.token_version or 0, "exp": expires}
    return jwt.encode(claims, secret, algorithm="HS256")


def decode_reset_token(token: str, secret: str) -> tuple[int, int] | None:
    """(account id, token version) of a valid, unexpired reset token; None for anything else (an access or
    verification token too: their audience differs)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=RESET_PASSWORD,
            options={"require": ["exp", "sub", "aud", "ver"]},
        )
        return int(claims["sub"]), int(claims["ver"])
    except (jwt.PyJWTError, ValueError, TypeError):
        return None


def revoke_tokens(user: User) -> None:
    """Every token issued to `user` so far stops working with the commit that follows (on its next request, on every
    replica): for a changed password, role or "log out everywhere". Disabling the account (`disabled_at`) or deleting
    it has the same effect on its own."""
    user.token_version = (user.token_version or 0) + 1


@dataclass(frozen=True)
class Principal:
    """Who is calling, from a verified token. `deps.current_user` then checks it against the account's row on every
    request (one indexed lookup), so a disabled, deleted or revoked account is refused at once, not when the token
    expires."""

    id: int
    role: str
    version: int = 0


def decode_token(token: str, secret: str) -> Principal | None:
    """The principal of a valid, unexpired token signed with `secret`; None for anything else."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub", "role"]})
        # Tokens issued before token versions existed carry none: version 0, the column's default.
        principal = Principal(int(claims["sub"]), claims["role"], int(claims.get("ver", 0)))
    except (jwt.PyJWTError, ValueError, KeyError):
        return None
    return principal if principal.role in ROLES else None
