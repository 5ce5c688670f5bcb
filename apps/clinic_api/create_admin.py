"""`python -m clinic_api.create_admin EMAIL "Full Name"` — bootstrap the first admin; password read from stdin, held to
the API's password policy (clinic_api.passwords)."""

from __future__ import annotations

import sys

from sqlalchemy.orm import Session

from clinic_api.db import make_engine
from clinic_api.models import User, now
from clinic_api.passwords import password_problem
from clinic_api.security import hash_password
from clinic_api.settings import get_settings


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m clinic_api.create_admin EMAIL 'Full Name'  (password on stdin)", file=sys.stderr)
        return 2
    password = sys.stdin.readline().rstrip("\n")
    if problem := password_problem(password, argv[0]):
        print(f"error: the admin password {problem}", file=sys.stderr)
        return 2
    with Session(make_engine(get_settings())) as session:
        admin = User(
            email=argv[0].lower(),
            full_name=argv[1],
            role="admin",
            password_hash=hash_password(password),
            email_verified_at=now(),  # the operator vouches for the address
        )
        session.add(admin)
        session.commit()
    print(f"admin {argv[0]} created")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
