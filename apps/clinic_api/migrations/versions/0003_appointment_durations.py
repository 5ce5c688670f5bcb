"""Appointments last from starts_at to ends_at, and a doctor's appointments never overlap (an exclusion constraint,
not only a unique start instant).

Existing rows keep their start and get 30 minutes, cut short where the doctor's next appointment starts sooner: the
old unique index allowed 14:00 and 14:10 for one doctor, and the new constraint would refuse the pair. Every row is
kept; no start moves.

btree_gist lets a GiST index compare `doctor_id` with `=`. It is a trusted extension (PostgreSQL 13+): the database
owner may create it, on RDS too, without rds_superuser."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

DEFAULT_MINUTES = 30


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.add_column("appointments", sa.Column("ends_at", sa.DateTime(timezone=True)))
    op.execute(
        f"""
        UPDATE appointments AS a SET ends_at = CASE
            WHEN a.status = 'cancelled' THEN a.starts_at + interval '{DEFAULT_MINUTES} minutes'
            ELSE LEAST(
                a.starts_at + interval '{DEFAULT_MINUTES} minutes',
                (SELECT min(b.starts_at) FROM appointments AS b
                  WHERE b.doctor_id = a.doctor_id AND b.status <> 'cancelled' AND b.starts_at > a.starts_at)
            )
        END
        """
    )
    op.alter_column("appointments", "ends_at", nullable=False)
    op.create_check_constraint(
        "ck_appointments_duration", "appointments", "ends_at > starts_at AND ends_at - starts_at <= interval '8 hours'"
    )
    op.drop_index("uq_doctor_slot", "appointments")
    op.execute(
        "ALTER TABLE appointments ADD CONSTRAINT no_overlapping_appointments EXCLUDE USING gist "
        "(doctor_id WITH =, tstzrange(starts_at, ends_at) WITH &&) WHERE (status <> 'cancelled')"
    )
    op.create_index("ix_appointments_patient_starts", "appointments", ["patient_id", "starts_at"])


def downgrade() -> None:
    op.drop_index("ix_appointments_patient_starts", "appointments")
    op.drop_constraint("no_overlapping_appointments", "appointments")
    # Appointments that do not overlap never share a start: the old unique index holds for every remaining row.
    op.create_index(
        "uq_doctor_slot",
        "appointments",
        ["doctor_id", "starts_at"],
        unique=True,
        postgresql_where=sa.text("status <> 'cancelled'"),
    )
    op.drop_constraint("ck_appointments_duration", "appointments")
    op.drop_column("appointments", "ends_at")
