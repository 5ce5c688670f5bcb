"""Passwords (argon2), tokens (JWT) and the principal they carry, login throttling (the dependencies routes declare
are in deps.py)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from clinic_api.models import User

ROLES = ("patient", "doctor", "staff", "admin")
INVALID_TOKEN = "missing, invalid or expired token"
FORBIDDEN = "your role may not do this"
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def issue_token(user: User, secret: str, minutes: int) -> str:
    expires = datetime.now(UTC) + timedelta(minutes=minutes)
    claims = {"sub": str(user.id), "role": user.role, "ver": user.token_version or 0, "exp": expires}
    return jwt.encode(claims, secret, algorithm="HS256")


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


class LoginThrottle:
    """In-process: N failures per (email, client) within the window lock that pair out until the window passes.
    Per replica — an attacker spread over replicas gets N per replica, still far below what brute force needs."""

    def __init__(self, max_failures: int, window_seconds: int):
        self.max_failures, self.window = max_failures, window_seconds
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: tuple[str, str]) -> int:
        with self._lock:
            recent = [t for t in self._failures.get(key, []) if t > time.monotonic() - self.window]
            self._failures[key] = recent
            if len(recent) < self.max_failures:
                return 0
            return int(recent[0] + self.window - time.monotonic()) + 1

    def failed(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._failures.setdefault(key, []).append(time.monotonic())

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._failures.pop(key, None)
