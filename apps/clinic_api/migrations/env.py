from alembic import context

from clinic_api.models import Base

config = context.config
connectable = config.attributes["connection"]
context.configure(connection=connectable, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
