"""Profiles (patient, doctor), consent history, the patients' access log, account language and erasure marks.

Only adds: new tables, nullable columns or columns with a server default, so existing rows stay as they are; the
download audit rows written before gain the patient whose exam they name."""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.add_column("users", sa.Column("language", sa.String(5), nullable=False, server_default="pt-BR"))
    op.add_column("users", sa.Column("erased_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("retained_until", sa.Date))
    op.create_table(
        "patient_profiles",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("date_of_birth", sa.Date),
        sa.Column("phone", sa.String(32)),
        sa.Column("emergency_contact_name", sa.String(200)),
        sa.Column("emergency_contact_phone", sa.String(32)),
        sa.Column("cpf_hash", sa.String(64), unique=True),
        sa.Column("cpf_encrypted", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "doctor_profiles",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("specialty", sa.String(120), nullable=False),
        sa.Column("crm_number", sa.String(10), nullable=False),
        sa.Column("crm_state", sa.String(2), nullable=False),
        sa.Column("bio", sa.Text, nullable=False),
        sa.UniqueConstraint("crm_state", "crm_number", name="uq_doctor_crm"),
    )
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notice_version", sa.String(20), nullable=False),
        sa.Column("purposes", sa.JSON, nullable=False),
        sa.Column("client_ip", sa.String(45)),
    )
    op.add_column("audit_log", sa.Column("subject_id", sa.Integer))
    op.add_column("audit_log", sa.Column("client_ip", sa.String(45)))
    op.create_index("ix_audit_log_subject_id", "audit_log", ["subject_id"])
    op.execute(
        "UPDATE audit_log SET subject_id = exams.patient_id FROM exams "
        "WHERE audit_log.exam_id = exams.id AND audit_log.subject_id IS NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_audit_log_subject_id", "audit_log")
    for column in ("client_ip", "subject_id"):
        op.drop_column("audit_log", column)
    for table in ("consents", "doctor_profiles", "patient_profiles"):
        op.drop_table(table)
    for column in ("retained_until", "erased_at", "language"):
        op.drop_column("users", column)
