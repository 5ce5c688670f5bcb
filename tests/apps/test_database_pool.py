"""The shared engine's pool: connections left idle across a PostgreSQL restart are replaced before use, without a
ping round trip on connections in steady use."""

from __future__ import annotations

import pytest
from sqlalchemy import exc, text

import clinic_common.database as database
from clinic_common.aws import AwsSettings
from clinic_common.database import DatabaseSettings, create_engine


@pytest.fixture
def engine(restartable_postgres):
    engine = create_engine(
        DatabaseSettings(
            host=restartable_postgres.host,
            port=restartable_postgres.port,
            name="postgres",
            user="postgres",
            sslmode="disable",
        ),
        AwsSettings(),
        "pool-test",
    )
    yield engine
    engine.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def restart(server) -> None:
    server.stop()
    server.start()


def test_a_connection_idle_across_a_restart_is_replaced_before_the_request_uses_it(
    engine, restartable_postgres, monkeypatch
):
    before = backend_pid(engine)
    restart(restartable_postgres)
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)  # the pooled connection now counts as idle
    assert backend_pid(engine) != before, "the stale connection was pinged, discarded and replaced"


def test_a_connection_in_steady_use_is_not_pinged_and_one_failure_renews_the_whole_pool(
    engine, restartable_postgres, monkeypatch
):
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 3600.0)
    backend_pid(engine)
    restart(restartable_postgres)
    with pytest.raises(exc.DBAPIError) as failed:
        backend_pid(engine)
    assert failed.value.connection_invalidated, "a disconnect is recognised as such"
    backend_pid(engine)  # the next request gets a fresh connection


def test_a_hot_connection_is_reused_without_a_ping(engine, monkeypatch):
    pings = []
    monkeypatch.setattr(engine.dialect, "do_ping", lambda connection: pings.append(connection) or True)
    first = backend_pid(engine)
    assert [backend_pid(engine) for _ in range(5)] == [first] * 5 and pings == []
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)
    backend_pid(engine)
    assert len(pings) == 1, "an idle connection is pinged once before use"
