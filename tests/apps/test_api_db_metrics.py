"""The API's database connection gauges against the real PostgreSQL: the server's own numbers, read on a connection of
their own (so a scrape still answers while the request pool is exhausted), and absent rather than stale on failure."""

import time

import pytest
from api_support import running_clinic
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from clinic_api.db_metrics import APPLICATION_NAME, DatabaseStats
from clinic_api.settings import Settings


def scrape(client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        s.name: s.value
        for f in text_string_to_metric_families(response.text)
        for s in f.samples
        if s.name.startswith("clinic_db_")
    }


@pytest.fixture
def clinic(postgres, clinic_aws):
    with running_clinic(postgres, clinic_aws) as clinic:
        yield clinic


@pytest.fixture
def server(postgres):
    engine = create_engine(f"postgresql+psycopg://postgres@/postgres?host={postgres.host}&port={postgres.port}")
    yield engine
    engine.dispose()


def test_metrics_report_the_servers_connections_and_max_connections(clinic, server):
    held = [server.connect() for _ in range(3)]
    try:
        values = scrape(clinic.client)
        max_connections = int(held[0].execute(text("SHOW max_connections")).scalar())
        clients, ours = (
            held[0]
            .execute(
                text(
                    "SELECT count(*) FILTER (WHERE backend_type = 'client backend'),"
                    " count(*) FILTER (WHERE application_name = :name) FROM pg_stat_activity"
                ),
                {"name": APPLICATION_NAME},
            )
            .one()
        )
    finally:
        for connection in held:
            connection.close()
    assert values["clinic_db_stats_up"] == 1
    assert values["clinic_db_max_connections"] == max_connections
    assert values["clinic_db_connections"] == clients >= len(held) + 1, "every client connection, the test's too"
    assert ours == 1, "the stats read through one connection of their own, kept between scrapes"


def test_a_scrape_answers_while_every_request_connection_is_taken(clinic):
    pool = clinic.app.state.engine.pool
    taken = [clinic.app.state.engine.connect() for _ in range(pool.size() + pool._max_overflow)]
    try:
        started = time.monotonic()
        values = scrape(clinic.client)
        assert time.monotonic() - started < 5, "the scrape waited for the request pool"
    finally:
        for connection in taken:
            connection.close()
    assert values["clinic_db_stats_up"] == 1 and values["clinic_db_connections"] >= len(taken)


def test_an_unreachable_database_leaves_the_gauges_out_and_reports_down():
    stats = DatabaseStats()
    stats.watch(
        Settings(
            database={"host": "127.0.0.1", "port": 9, "user": "postgres", "sslmode": "disable", "connect_timeout": 1}
        )
    )
    families = {f.name: f.samples for f in stats.collect()}
    assert families["clinic_db_connections"] == [] and families["clinic_db_max_connections"] == []
    assert [s.value for s in families["clinic_db_stats_up"]] == [0]


def test_before_any_app_is_built_the_collector_exports_only_its_names():
    families = {f.name: f.samples for f in DatabaseStats().collect()}
    assert families == {"clinic_db_connections": [], "clinic_db_max_connections": [], "clinic_db_stats_up": []}


def test_concurrent_scrapes_share_the_one_connection_the_budget_counts(clinic, server, monkeypatch):
    """stacks/settings.py counts one /metrics connection per API pod; overlapping scrapes must not open a second."""
    import threading

    import clinic_api.db_metrics as db_metrics

    monkeypatch.setattr(
        db_metrics,
        "QUERY",
        text("SELECT pg_sleep(0.3), 1 AS connections, current_setting('max_connections')::int AS max_connections"),
    )
    seen = []

    def count() -> None:
        with server.connect() as connection:
            seen.append(
                connection.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"), {"n": APPLICATION_NAME}
                ).scalar()
            )

    scrapes = [threading.Thread(target=db_metrics.DATABASE_STATS.read) for _ in range(3)]
    for scrape_thread in scrapes:
        scrape_thread.start()
    time.sleep(0.15)
    count()
    for scrape_thread in scrapes:
        scrape_thread.join()
    assert seen == [1]
