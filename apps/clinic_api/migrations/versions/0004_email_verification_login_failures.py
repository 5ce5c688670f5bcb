"""Email verification before a self-registered account is usable, and failed logins counted in the database (shared by
every replica). Existing accounts count as verified (from their creation) and keep their passwords."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("users", sa.Column("email_verified_at", sa.DateTime(timezone=True)))
    op.execute("UPDATE users SET email_verified_at = created_at")
    # A self-registered account has no password until its owner chooses one through the emailed link.
    op.alter_column("users", "password_hash", existing_type=sa.String(200), nullable=True)
    op.create_table(
        "login_failures",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("login_failures")
    op.execute("UPDATE users SET password_hash = '' WHERE password_hash IS NULL")
    op.alter_column("users", "password_hash", existing_type=sa.String(200), nullable=False)
    op.drop_column("users", "email_verified_at")
