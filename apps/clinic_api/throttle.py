"""Failed logins, counted in PostgreSQL so that every replica sees the same counts, under three keys at once:

- the email from this client address (`auth.max_login_failures`): someone mistyping, or guessing one account;
- the client address, whatever the email (`auth.max_client_login_failures`): password spraying, one password tried
  against many accounts;
- the email, whatever the address (`auth.max_account_login_failures`): one account guessed from many addresses. Higher,
  since reaching it locks the owner out too.

Registrations are counted the same way, so that nobody can make the clinic send a stranger's mailbox an email per
request: from one client address (`auth.max_client_registrations`, then 429), and for one email
(`auth.max_registration_emails`; beyond it the answer stays the same and no email goes out). Password-reset requests
likewise (`auth.max_client_password_resets`, `auth.max_password_reset_emails`).

Keys are SHA-256 digests, so the table holds no email or address. Each key counts in a fixed window of
`auth.lockout_seconds` from its first count; a key at its limit stays there until its window ends."""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import UTC, datetime, timedelta

from fastapi import Request
from sqlalchemy import case, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from clinic_api.models import LoginFailure
from clinic_api.settings import AuthSettings


def client_of(request: Request) -> str:
    """The address a request came from, as the throttles count it ("" when the server does not know it)."""
    return request.client.host if request.client else ""


def client_key(host: str) -> str:
    """The address that counts: IPv6 clients by their /64, which one subscriber holds whole (a rotating address inside
    it is still one client)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:  # an IPv4 client on a dual-stack socket
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class LoginThrottle:
    def __init__(self, auth: AuthSettings):
        self.window = timedelta(seconds=auth.lockout_seconds)
        self.limits = {
            "pair": auth.max_login_failures,
            "client": auth.max_client_login_failures,
            "account": auth.max_account_login_failures,
            "register-client": auth.max_client_registrations,
            "register-email": auth.max_registration_emails,
            "reset-client": auth.max_client_password_resets,
            "reset-email": auth.max_password_reset_emails,
        }

    def keys(self, email: str, client: str) -> dict[str, str]:
        email, client = email.lower(), client_key(client)
        return {
            "pair": _digest("pair", email, client),
            "client": _digest("client", client),
            "account": _digest("account", email),
        }

    def registration_keys(self, email: str, client: str) -> dict[str, str]:
        return {
            "register-client": _digest("register-client", client_key(client)),
            "register-email": _digest("register-email", email.lower()),
        }

    def reset_keys(self, email: str, client: str) -> dict[str, str]:
        return {
            "reset-client": _digest("reset-client", client_key(client)),
            "reset-email": _digest("reset-email", email.lower()),
        }

    def retry_after(self, session: Session, keys: dict[str, str]) -> int:
        """Seconds until the first of `keys` at its limit leaves it; 0 when none is."""
        now = datetime.now(UTC)
        limit_of = {key: self.limits[kind] for kind, key in keys.items()}
        rows = session.execute(
            select(LoginFailure.key, LoginFailure.failures, LoginFailure.window_started_at).where(
                LoginFailure.key.in_(keys.values()), LoginFailure.window_started_at > now - self.window
            )
        ).all()
        waits = [(started + self.window - now).total_seconds() for key, n, started in rows if n >= limit_of[key]]
        return int(max(waits)) + 1 if waits else 0

    def count(self, session: Session, keys: dict[str, str]) -> None:
        """Counts one (failure, registration) under each key (one statement, atomic across replicas) and commits."""
        now = datetime.now(UTC)
        expired = LoginFailure.window_started_at <= now - self.window
        statement = insert(LoginFailure).values(
            [{"key": k, "failures": 1, "window_started_at": now} for k in keys.values()]
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[LoginFailure.key],
                set_={
                    "failures": case((expired, 1), else_=LoginFailure.failures + 1),
                    "window_started_at": case((expired, now), else_=LoginFailure.window_started_at),
                },
            )
        )
        # Windows that ended count nothing: dropped, so a spray over many emails does not grow the table for good.
        session.execute(delete(LoginFailure).where(expired))
        session.commit()

    def succeeded(self, session: Session, keys: dict[str, str]) -> None:
        """The owner got in: their email's counts start over. The client's do not, or a sprayer holding one valid
        account could reset its own."""
        session.execute(delete(LoginFailure).where(LoginFailure.key.in_([keys["pair"], keys["account"]])))
        session.commit()
