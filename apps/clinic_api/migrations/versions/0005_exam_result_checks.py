"""Exam results are checked by the file processor: their SHA-256 and when they were checked.

Adds two nullable columns (no row changes). Exams whose result was uploaded but never checked (the file queue had no
consumer until now, so their messages have expired) get a `file.uploaded` event in the outbox, so the processor checks
them after this release; staff can mark a result ready only once it has been checked (`verified`).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.add_column("exams", sa.Column("result_sha256", sa.String(64)))
    op.add_column("exams", sa.Column("result_checked_at", sa.DateTime(timezone=True)))
    op.execute(
        """
        INSERT INTO outbox (event_id, event_type, occurred_at, payload, attempts, next_attempt_at)
        SELECT gen_random_uuid(), 'file.uploaded', now(),
               json_build_object('exam_id', id, 'result_key', result_key), 0, now()
        FROM exams WHERE status = 'uploaded' AND result_key IS NOT NULL
        ORDER BY id
        """
    )


def downgrade() -> None:
    # The previous release knows no 'verified' or 'quarantined' exam: both go back to 'uploaded' (a quarantined one
    # keeps the key of its set-aside copy, which the API cannot read, so it still cannot be marked ready).
    op.execute("UPDATE exams SET status = 'uploaded' WHERE status IN ('verified', 'quarantined')")
    op.drop_column("exams", "result_checked_at")
    op.drop_column("exams", "result_sha256")
