"""Exams: corrections and cancellation with a reason; every result file ever uploaded (exam_results), with its S3
object version; audit rows carry what changed.

Existing rows: each exam's current result becomes its first exam_results row (version unknown: uploaded before
versions were recorded), dated with the exam; nothing is removed."""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.add_column("exams", sa.Column("result_version_id", sa.String(1024)))
    op.add_column("exams", sa.Column("cancelled_at", sa.DateTime(timezone=True)))
    op.add_column("exams", sa.Column("cancelled_by", sa.Integer))
    op.add_column("exams", sa.Column("cancel_reason", sa.String(500)))
    op.add_column("audit_log", sa.Column("detail", sa.JSON))
    op.create_table(
        "exam_results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("exam_id", sa.Integer, sa.ForeignKey("exams.id"), nullable=False, index=True),
        sa.Column("result_key", sa.String(300), nullable=False),
        sa.Column("version_id", sa.String(1024)),
        sa.Column("size_bytes", sa.Integer),
        sa.Column("uploaded_by", sa.Integer),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        "INSERT INTO exam_results (exam_id, result_key, uploaded_at) "
        "SELECT id, result_key, created_at FROM exams WHERE result_key IS NOT NULL ORDER BY id"
    )


def downgrade() -> None:
    op.drop_table("exam_results")
    op.drop_column("audit_log", "detail")
    for column in ("cancel_reason", "cancelled_by", "cancelled_at", "result_version_id"):
        op.drop_column("exams", column)
