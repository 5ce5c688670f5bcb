"""The API's hot-path pool (clinic_api.db.make_hot_pool): the engine's idle-ping rule, renewal after a server
restart, and credentials from the RDS secret read afresh for each new connection."""

from __future__ import annotations

import asyncio
import json
import uuid

import boto3
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import func, literal_column, select, text
from support import REGION

import clinic_common.database as database
from clinic_api.db import Prepared, make_hot_pool
from clinic_api.settings import Settings
from clinic_common.aws import AwsSettings
from clinic_common.database import DatabaseSettings, create_engine

BACKEND_PID = Prepared.of(select(func.pg_backend_pid().label("pid")))
CURRENT_USER = Prepared.of(select(literal_column("current_user").label("user")))


def settings(server, endpoint: str | None = None, **database_settings) -> Settings:
    db = {
        "host": server.host,
        "port": server.port,
        "name": "postgres",
        "user": "postgres",
        "sslmode": "disable",
        "pool_size": 1,
        **database_settings,
    }
    return Settings(database=db, aws={"region": REGION, "endpoint_url": endpoint})


def with_pool(settings: Settings, scenario):
    """Runs `scenario(pool)` on an open pool, on a loop of its own (see test_api_health for why)."""

    async def run():
        pool = make_hot_pool(settings)
        await pool.open(wait=True)
        try:
            return await scenario(pool)
        finally:
            await pool.close()

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


async def pid(pool) -> int:
    return (await BACKEND_PID.fetch(pool))[0]["pid"]


def restart(server) -> None:
    server.stop()
    server.start()


def test_a_connection_idle_across_a_restart_is_replaced_before_the_request_uses_it(restartable_postgres, monkeypatch):
    async def scenario(pool):
        before = await pid(pool)
        restart(restartable_postgres)
        monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)  # the pooled connection now counts as idle
        assert await pid(pool) != before, "the stale connection was pinged, discarded and replaced"

    with_pool(settings(restartable_postgres), scenario)


def test_after_a_restart_no_request_fails_and_the_pool_renews_its_other_connections(restartable_postgres, monkeypatch):
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 3600.0)  # a hot pool: no ping saves the request

    async def scenario(pool):
        assert len({await pid(pool) for _ in range(6)}) == 3, "all three connections in use"
        restart(restartable_postgres)
        after = [await pid(pool) for _ in range(6)]
        assert all(after) and pool.get_stats()["connections_num"] == 6, "the three stale ones were replaced"

    with_pool(settings(restartable_postgres, pool_size=3), scenario)


def test_a_statement_error_on_a_live_connection_is_not_retried(restartable_postgres):
    cancel_itself = Prepared.of(select(func.pg_cancel_backend(func.pg_backend_pid()), func.pg_sleep(1)))

    async def scenario(pool):
        before = pool.get_stats().get("requests_num", 0)
        with pytest.raises(psycopg.errors.QueryCanceled):  # an OperationalError, on a connection that stays usable
            await cancel_itself.fetch(pool)
        assert pool.get_stats()["requests_num"] - before == 1, "run once"

    with_pool(settings(restartable_postgres), scenario)


def test_a_hot_connection_is_used_without_a_ping_and_an_idle_one_is_pinged_once(restartable_postgres, monkeypatch):
    pings = []

    async def ping(connection):
        pings.append(connection)

    monkeypatch.setattr(AsyncConnectionPool, "check_connection", staticmethod(ping))

    async def scenario(pool):
        first = await pid(pool)
        assert [await pid(pool) for _ in range(5)] == [first] * 5 and pings == []
        monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)
        await pid(pool)
        assert len(pings) == 1

    with_pool(settings(restartable_postgres), scenario)


def test_credentials_come_from_the_rds_secret_and_a_rotation_reaches_the_next_connection(
    restartable_postgres, moto_endpoint
):
    roles = [f"api_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    admin = create_engine(
        DatabaseSettings(
            host=restartable_postgres.host,
            port=restartable_postgres.port,
            name="postgres",
            user="postgres",
            sslmode="disable",
        ),
        AwsSettings(),
        "test",
    )
    with admin.begin() as connection:
        for role in roles:
            connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'from-the-secret'"))
    admin.dispose()
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name=REGION)
    arn = secrets.create_secret(
        Name=f"rds!{roles[0]}", SecretString=json.dumps({"username": roles[0], "password": "from-the-secret"})
    )["ARN"]

    async def scenario(pool):
        assert (await CURRENT_USER.fetch(pool))[0]["user"] == roles[0]
        secrets.put_secret_value(
            SecretId=arn, SecretString=json.dumps({"username": roles[1], "password": "from-the-secret"})
        )
        assert (await CURRENT_USER.fetch(pool))[0]["user"] == roles[0], "open connections are kept"
        await pool.drain()  # as when max_lifetime ends them
        assert (await CURRENT_USER.fetch(pool))[0]["user"] == roles[1]

    with_pool(settings(restartable_postgres, moto_endpoint, user="not-this-one", secret_arn=arn), scenario)
