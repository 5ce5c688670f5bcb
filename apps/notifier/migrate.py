"""``python -m notifier.migrate``: create the notifier's table (idempotent; run once per release)."""

from __future__ import annotations

import logging
import sys

from .app import build_engine, configure_logging
from .settings import get_settings
from .store import TABLE, SentEventStore

log = logging.getLogger("notifier.migrate")


def main() -> int:
    settings = get_settings()
    configure_logging(settings)
    engine = build_engine(settings)
    try:
        SentEventStore(engine).create_table()
    finally:
        engine.dispose()
    log.info("table ready", extra={"table": TABLE})
    return 0


if __name__ == "__main__":
    sys.exit(main())
