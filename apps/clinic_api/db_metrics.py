"""PostgreSQL connections in use and the server's max_connections, read when Prometheus scrapes /metrics.

The query runs on a one-connection engine of its own, not the request pool: the pool is exhausted exactly when
these numbers matter, and a scrape must not wait behind requests. A failed read leaves the two gauges out of that
scrape (never a stale value) and sets ``clinic_db_stats_up`` to 0.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, text

from clinic_api.settings import Settings
from clinic_common.database import create_engine

log = logging.getLogger("clinic.db_metrics")

STATEMENT_TIMEOUT_MS = 2000
"""Well inside Prometheus' 10 s scrape timeout, with the connect timeout of the database settings."""
APPLICATION_NAME = "clinic-api-metrics"
QUERY = text("""
    SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS connections,
           current_setting('max_connections')::int AS max_connections
    FROM pg_stat_activity
""")


class DatabaseStats(Collector):
    """One per process (registered once on the default registry); `watch` points it at the app's database."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._reading = threading.Lock()  # one read at a time: the engine's one connection, never an overflow one

    def watch(self, settings: Settings) -> None:
        """Reads the database `settings` describe from now on, through its own single pooled connection."""
        engine = create_engine(settings.database.model_copy(update={"pool_size": 1}), settings.aws, APPLICATION_NAME)
        with self._lock:
            previous, self._engine = self._engine, engine
        if previous is not None:
            previous.dispose()

    def read(self) -> tuple[int, int] | None:
        """(client connections on the server, max_connections), or None when the database cannot say."""
        engine = self._engine
        if engine is None:
            return None
        try:
            with self._reading, engine.connect() as connection:
                connection.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
                row = connection.execute(QUERY).one()
        except Exception as exc:  # noqa: BLE001 - a scrape reports the failure, it never fails because of it
            log.warning("could not read database connection stats", extra={"error": type(exc).__name__})
            return None
        return int(row.connections), int(row.max_connections)

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        connections, maximum, up = self._families()
        if self._engine is not None:
            stats = self.read()
            if stats is not None:
                connections.add_metric([], stats[0])
                maximum.add_metric([], stats[1])
            up.add_metric([], 0 if stats is None else 1)
        yield from (connections, maximum, up)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "clinic_db_connections", "Client connections open on the PostgreSQL server, all applications."
            ),
            GaugeMetricFamily("clinic_db_max_connections", "The PostgreSQL server's max_connections."),
            GaugeMetricFamily("clinic_db_stats_up", "1 if the last read of the two above succeeded."),
        )


DATABASE_STATS = DatabaseStats()
REGISTRY.register(DATABASE_STATS)
