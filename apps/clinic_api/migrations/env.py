from alembic import context

from clinic_api.models import Base

config = context.config
connectable = config.attributes["connection"]
# A transaction per migration: a failed one leaves the schema at the previous revision, and one may commit early to
# run what cannot run in a transaction (op.get_context().autocommit_block(), as 0011's CREATE INDEX CONCURRENTLY).
context.configure(connection=connectable, target_metadata=Base.metadata, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
