"""An index on the accounts never confirmed, by age: the purge at each registration (accounts/service.py
purge_unconfirmed) finds the old ones without reading the whole users table. Only adds an index: every row stays."""

from alembic import op
from sqlalchemy import text

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_index(
        "ix_users_unconfirmed_created",
        "users",
        ["created_at"],
        postgresql_where=text("email_verified_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_users_unconfirmed_created", table_name="users")
