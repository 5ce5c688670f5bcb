"""Indexes for the audit log's newest-first pages, one per way it is read: by action and by actor (GET /audit's
filters), by exam (GET /exams/{id}/audit) and by subject (a patient's access log, replacing 0008's index on the
subject alone). Each ends with the id the pages walk on, so a page is one index range, however large the log.

Built CONCURRENTLY: nearly every request writes a row to this table, and a plain CREATE INDEX would hold those writes
(and so the requests) for as long as the build takes on a large log. A concurrent build that fails leaves an invalid
index behind; a rerun drops it and builds it again, rather than taking it as done."""

from alembic import op

revision = "0011"
down_revision = "0010"

INDEXES = {
    "ix_audit_log_action_id": ["action", "id"],
    "ix_audit_log_user_id_id": ["user_id", "id"],
    "ix_audit_log_exam_id_id": ["exam_id", "id"],
    "ix_audit_log_subject_id_id": ["subject_id", "id"],
}
REPLACED = "ix_audit_log_subject_id"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, columns in INDEXES.items():
            _drop_if_invalid(name)
            op.create_index(name, "audit_log", columns, postgresql_concurrently=True, if_not_exists=True)
        op.drop_index(REPLACED, table_name="audit_log", postgresql_concurrently=True, if_exists=True)


def downgrade() -> None:
    op.create_index(REPLACED, "audit_log", ["subject_id"])
    for name in INDEXES:
        op.drop_index(name, table_name="audit_log")


def _drop_if_invalid(name: str) -> None:
    invalid = op.get_bind().exec_driver_sql(
        "SELECT 1 FROM pg_index JOIN pg_class ON pg_class.oid = pg_index.indexrelid "
        "WHERE pg_class.relname = %(name)s AND NOT pg_index.indisvalid",
        {"name": name},
    )
    if invalid.first():
        op.drop_index(name, table_name="audit_log", postgresql_concurrently=True)
