"""`python -m clinic_api.create_admin EMAIL "Full Name"` — bootstrap the first admin; password read from stdin."""

from __future__ import annotations

import sys

from sqlalchemy.orm import Session

from clinic_api.db import make_engine
from clinic_api.models import User
from clinic_api.security import hash_password
from clinic_api.settings import get_settings


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m clinic_api.create_admin EMAIL 'Full Name'  (password on stdin)", file=sys.stderr)
        return 2
    password = sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        print("error: the admin password must have at least 12 characters", file=sys.stderr)
        return 2
    with Session(make_engine(get_settings())) as session:
        session.add(User(email=argv[0].lower(), full_name=argv[1], role="admin", password_hash=hash_password(password)))
        session.commit()
    print(f"admin {argv[0]} created")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
