"""Agendas: doctors' weekly schedules and exceptions; appointments' reminder claim and cancellation reason.

Only new tables and nullable columns: existing rows stay as they are (no reminder sent, no reason recorded)."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "schedule_blocks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("doctor_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("weekday", sa.SmallInteger, nullable=False),
        sa.Column("starts", sa.Time, nullable=False),
        sa.Column("ends", sa.Time, nullable=False),
        sa.Column("slot_minutes", sa.SmallInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.CheckConstraint("weekday BETWEEN 0 AND 6", name="ck_schedule_blocks_weekday"),
        sa.CheckConstraint("ends > starts OR ends = '00:00'", name="ck_schedule_blocks_order"),
        sa.CheckConstraint("slot_minutes BETWEEN 5 AND 240", name="ck_schedule_blocks_slot"),
        sa.CheckConstraint("kind IN ('in_person', 'video', 'any')", name="ck_schedule_blocks_kind"),
    )
    op.create_table(
        "schedule_exceptions",
        sa.Column("id", sa.Integer, primary_key=True),
        # NULL: the whole clinic is closed (a holiday), for every doctor.
        sa.Column("doctor_id", sa.Integer, sa.ForeignKey("users.id"), index=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("created_by", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("ends_at > starts_at", name="ck_schedule_exceptions_order"),
    )
    op.add_column("appointments", sa.Column("reminder_sent_at", sa.DateTime(timezone=True)))
    op.add_column("appointments", sa.Column("cancelled_at", sa.DateTime(timezone=True)))
    op.add_column("appointments", sa.Column("cancelled_by", sa.Integer))
    op.add_column("appointments", sa.Column("cancel_reason", sa.String(500)))
    # What the reminder pass scans: confirmed appointments not yet reminded, by start.
    op.create_index(
        "ix_appointments_reminder_due",
        "appointments",
        ["starts_at"],
        postgresql_where=sa.text("reminder_sent_at IS NULL AND status = 'confirmed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_appointments_reminder_due", "appointments")
    for column in ("cancel_reason", "cancelled_by", "cancelled_at", "reminder_sent_at"):
        op.drop_column("appointments", column)
    op.drop_table("schedule_exceptions")
    op.drop_table("schedule_blocks")
