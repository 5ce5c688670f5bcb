"""`python -m clinic_api.migrate`: bring the schema to the latest revision (a Kubernetes Job, once per release)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from clinic_api.db import make_engine
from clinic_api.settings import get_settings

MIGRATIONS = Path(__file__).with_name("migrations")
log = logging.getLogger("clinic.migrate")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Runs each migration in a transaction of its own (migrations/env.py), so that one may step out of it: an
    index on a busy table is built CONCURRENTLY, which PostgreSQL refuses inside a transaction."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def main(attempts: int = 30) -> int:
    logging.basicConfig(level=logging.INFO)
    engine = make_engine(get_settings())
    for attempt in range(1, attempts + 1):
        try:  # the database may still be starting (seed 000: retry on start-up)
            upgrade(engine)
            log.info("schema at head")
            return 0
        except OperationalError as error:
            log.warning("database not reachable (attempt %d/%d): %s", attempt, attempts, error.orig)
            time.sleep(2)
    return 1


if __name__ == "__main__":
    sys.exit(main())
