"""The agenda and exam-history migrations upgrade a database in use without losing or changing a row."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from clinic_api.migrate import MIGRATIONS

BEFORE_AGENDAS = "0005"  # the newest revision before the agendas' (0006) and the exam history's (0007)


def migrate(engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # No transaction around it: each migration runs in its own (migrations/env.py), and 0011 steps out of it.
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_upgrading_a_database_in_use_keeps_every_appointment_and_exam_and_records_existing_results(postgres):
    database = postgres.create_database()
    engine = create_engine(f"postgresql+psycopg://postgres@/{database}?host={postgres.host}&port={postgres.port}")
    migrate(engine, BEFORE_AGENDAS)
    starts = datetime(2027, 3, 1, 14, tzinfo=UTC)
    with engine.begin() as db:
        for user_id, role in ((1, "patient"), (2, "doctor")):
            db.execute(
                text(
                    "INSERT INTO users (id, email, full_name, role, password_hash, created_at) "
                    "VALUES (:id, :email, 'Someone', :role, 'x', now())"
                ),
                {"id": user_id, "email": f"{role}@example.org", "role": role},
            )
        db.execute(
            text(
                "INSERT INTO appointments (patient_id, doctor_id, starts_at, ends_at, kind, status) "
                "VALUES (1, 2, :s, :s + interval '30 minutes', 'video', 'confirmed')"
            ),
            {"s": starts},
        )
        db.execute(
            text(
                "INSERT INTO exams (id, patient_id, exam_type, status, result_key, created_at) VALUES "
                "(7, 1, 'Blood count', 'ready', 'exams/7/a.pdf', now()), (8, 1, 'Glucose', 'requested', NULL, now())"
            )
        )
    with engine.connect() as db:  # closed before the upgrade, whose ALTER TABLEs would wait for its locks
        before = {
            table: db.execute(text(f"SELECT * FROM {table} ORDER BY id")).mappings().all()
            for table in ("users", "appointments", "exams")
        }

    migrate(engine, "head")

    with engine.connect() as db:
        [appointment] = db.execute(text("SELECT * FROM appointments")).mappings().all()
        assert {k: appointment[k] for k in before["appointments"][0]} == dict(before["appointments"][0])
        assert appointment["reminder_sent_at"] is None and appointment["cancel_reason"] is None
        exams = db.execute(text("SELECT * FROM exams ORDER BY id")).mappings().all()
        assert [{k: e[k] for k in before["exams"][0]} for e in exams] == [dict(e) for e in before["exams"]]
        history = db.execute(text("SELECT exam_id, result_key, version_id FROM exam_results")).all()
        assert history == [(7, "exams/7/a.pdf", None)], "the result already there is the exam's first version"
        assert db.execute(text("SELECT count(*) FROM users")).scalar() == 2
    engine.dispose()
