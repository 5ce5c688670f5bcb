"""Migrations upgrade a database that holds data without losing a row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from clinic_api.migrate import MIGRATIONS, upgrade

T = datetime(2027, 3, 1, 14, 0, tzinfo=UTC)


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


@pytest.fixture
def engine(postgres):
    database = postgres.create_database()
    engine = create_engine(f"postgresql+psycopg://postgres@/{database}?host={postgres.host}&port={postgres.port}")
    yield engine
    engine.dispose()


def test_appointment_durations_keep_every_row_and_cut_short_those_the_old_schema_let_overlap(engine):
    upgrade(engine, "0002")  # the revision before appointment durations
    with engine.begin() as db:
        for user_id, role in ((1, "doctor"), (2, "doctor"), (3, "patient")):
            db.execute(
                text(
                    "INSERT INTO users (id, email, full_name, role, password_hash, created_at)"
                    " VALUES (:id, :email, 'X', :role, 'h', now())"
                ),
                {"id": user_id, "email": f"u{user_id}@example.org", "role": role},
            )
        # What revision 0002 accepted: one doctor at 14:00 and 14:10 (distinct starts), a cancelled 14:00 beside them.
        rows = [
            (1, 1, T, "confirmed"),
            (2, 1, T + minutes(10), "confirmed"),
            (3, 1, T, "cancelled"),
            (4, 1, T + minutes(120), "confirmed"),
            (5, 2, T, "confirmed"),
        ]
        for row_id, doctor_id, starts_at, status in rows:
            db.execute(
                text(
                    "INSERT INTO appointments (id, patient_id, doctor_id, starts_at, kind, status)"
                    " VALUES (:id, 3, :doctor, :starts, 'in_person', :status)"
                ),
                {"id": row_id, "doctor": doctor_id, "starts": starts_at, "status": status},
            )

    upgrade(engine)

    with engine.connect() as db:
        kept = db.execute(text("SELECT id, starts_at, ends_at, status FROM appointments ORDER BY id")).all()
    assert [(r.id, r.starts_at, r.ends_at - r.starts_at, r.status) for r in kept] == [
        (1, T, minutes(10), "confirmed"),  # cut short where the doctor's next appointment starts
        (2, T + minutes(10), minutes(30), "confirmed"),
        (3, T, minutes(30), "cancelled"),  # cancelled ones overlap nothing
        (4, T + minutes(120), minutes(30), "confirmed"),
        (5, T, minutes(30), "confirmed"),  # another doctor
    ]
    with pytest.raises(IntegrityError, match="no_overlapping_appointments"), engine.begin() as db:
        db.execute(
            text(
                "INSERT INTO appointments (id, patient_id, doctor_id, starts_at, ends_at, kind, status)"
                " VALUES (6, 3, 1, :starts, :ends, 'in_person', 'confirmed')"
            ),
            {"starts": T + minutes(130), "ends": T + minutes(140)},
        )


def test_profiles_and_privacy_keep_every_row_and_give_old_downloads_their_patient(engine):
    upgrade(engine, "0007")  # the revision before profiles and privacy
    with engine.begin() as db:
        db.execute(
            text(
                "INSERT INTO users (id, email, full_name, role, password_hash, created_at) VALUES "
                "(1, 'pat@example.org', 'Pat', 'patient', 'h', now()), "
                "(2, 'doc@example.org', 'Doc', 'doctor', 'h', now())"
            )
        )
        db.execute(
            text(
                "INSERT INTO exams (id, patient_id, doctor_id, exam_type, status, created_at) "
                "VALUES (7, 1, 2, 'MRI', 'ready', now())"
            )
        )
        db.execute(
            text(
                "INSERT INTO audit_log (at, user_id, action, exam_id, outcome, request_id) VALUES "
                "(now(), 2, 'result.download', 7, 'granted', 'r1'), (now(), 2, 'result.download', 99, 'denied', 'r2')"
            )
        )

    upgrade(engine)

    with engine.connect() as db:
        users = db.execute(text("SELECT id, email, language, erased_at FROM users ORDER BY id")).all()
        audits = db.execute(text("SELECT request_id, exam_id, subject_id FROM audit_log ORDER BY id")).all()
        exams = db.execute(text("SELECT id, patient_id, exam_type FROM exams")).all()
    assert users == [(1, "pat@example.org", "pt-BR", None), (2, "doc@example.org", "pt-BR", None)]
    assert audits == [("r1", 7, 1), ("r2", 99, None)], "a download's patient is its exam's; an unknown exam has none"
    assert exams == [(7, 1, "MRI")]


def test_the_whole_chain_upgrades_as_a_database_owner_that_is_not_a_superuser(postgres):
    """As on RDS, whose master user owns the database but is no superuser (rds_superuser is a role, not SUPERUSER):
    every migration, btree_gist's CREATE EXTENSION in 0003 included (a trusted extension since PostgreSQL 13: the
    database's owner may create it), runs as such a role."""
    owner = f"clinic_owner_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        f"postgresql+psycopg://postgres@/postgres?host={postgres.host}&port={postgres.port}",
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as db:
        db.execute(text(f"CREATE ROLE {owner} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"))
        db.execute(text(f'CREATE DATABASE "{owner}" OWNER {owner}'))
    admin.dispose()
    engine = create_engine(f"postgresql+psycopg://{owner}@/{owner}?host={postgres.host}&port={postgres.port}")
    try:
        with engine.connect() as db:
            assert db.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar() is False
        upgrade(engine)
        with engine.connect() as db:
            extension_owner = db.execute(
                text("SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'btree_gist'")
            ).scalar()
            head = db.execute(text("SELECT version_num FROM alembic_version")).scalar()
            tables = db.execute(text("SELECT count(*) FROM pg_tables WHERE tableowner = current_user")).scalar()
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        assert extension_owner == owner and head == ScriptDirectory.from_config(config).get_current_head()
        assert tables >= 10, "the schema's tables belong to the owner"
    finally:
        engine.dispose()


def test_audit_indexes_are_built_beside_a_full_log_and_a_rerun_replaces_an_invalid_one(engine):
    """0011 builds its indexes CONCURRENTLY (outside a transaction: PostgreSQL refuses it inside one), keeps every
    row, and the audit pages then read one index range; an index a failed concurrent build left invalid is rebuilt."""
    upgrade(engine, "0010")
    with engine.begin() as db:
        db.execute(
            text(
                "INSERT INTO audit_log (at, user_id, action, outcome, request_id, subject_id)"
                " SELECT now(), n % 50, CASE WHEN n % 1000 = 0 THEN 'data.export' ELSE 'exam.read' END, 'granted',"
                " 'r' || n, n % 300 FROM generate_series(1, 20000) AS n"
            )
        )
    upgrade(engine)

    def indexes(db) -> dict[str, bool]:
        query = (
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'audit_log'::regclass AND NOT i.indisprimary"
        )
        return dict(db.execute(text(query)).all())

    expected = {
        "ix_audit_log_action_id": True,
        "ix_audit_log_user_id_id": True,
        "ix_audit_log_exam_id_id": True,
        "ix_audit_log_subject_id_id": True,
    }
    with engine.begin() as db:
        assert db.execute(text("SELECT count(*) FROM audit_log")).scalar() == 20000
        assert indexes(db) == expected, "0008's index on the subject alone is replaced"
        db.execute(text("ANALYZE audit_log"))
        plan = db.execute(
            text("EXPLAIN SELECT id FROM audit_log WHERE action = 'data.export' ORDER BY id DESC LIMIT 51")
        ).scalars()
        assert "ix_audit_log_action_id" in "\n".join(plan), "a rare action's page is one index range, not a scan"
        # What a concurrent build interrupted (a deploy cancelled, a deadlock) leaves: the index there, but invalid.
        db.execute(
            text("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'ix_audit_log_exam_id_id'::regclass")
        )
        db.execute(text("UPDATE alembic_version SET version_num = '0010'"))
    upgrade(engine)
    with engine.connect() as db:
        assert indexes(db) == expected
