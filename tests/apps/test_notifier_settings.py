"""Notifier settings from the environment, and database credentials from the RDS-managed secret."""

import json
import uuid

import boto3
import pytest
from pydantic import ValidationError
from sqlalchemy import text
from support import REGION

from clinic_common.aws import AwsSettings
from clinic_common.database import DatabaseSettings, create_engine
from notifier.settings import NotifierSettings, get_settings

BASE = {
    "NOTIFIER_QUEUE_URLS": '["https://sqs.eu-west-1.amazonaws.com/1/clinic-account"]',
    "NOTIFIER_SES__FROM_ADDRESS": "no-reply@clinic.example",
}


@pytest.fixture
def env(monkeypatch):
    for key, value in BASE.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_defaults_and_nested_groups(env):
    env.setenv("NOTIFIER_DATABASE__HOST", "db.internal")
    env.setenv("NOTIFIER_DATABASE__SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:1:secret:rds!db-1")
    env.setenv("NOTIFIER_SES__CONFIGURATION_SET", "clinic")
    env.setenv("NOTIFIER_AWS__REGION", "eu-central-1")
    s = NotifierSettings()
    assert (s.batch_size, s.wait_seconds, s.http_port) == (10, 20, 8080)
    assert s.queue_urls == ["https://sqs.eu-west-1.amazonaws.com/1/clinic-account"]
    assert s.database.host == "db.internal" and s.database.secret_arn.endswith("rds!db-1")
    assert s.ses.configuration_set == "clinic" and s.aws.region == "eu-central-1"


def test_queue_urls_as_comma_separated_list(env):
    env.setenv("NOTIFIER_QUEUE_URLS", "https://sqs/1/a, https://sqs/1/b")
    assert NotifierSettings().queue_urls == ["https://sqs/1/a", "https://sqs/1/b"]


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("NOTIFIER_QUEUE_URLS", "[]", "queue_urls is empty; allowed: one or more SQS queue URLs"),
        ("NOTIFIER_QUEUE_URLS", '["clinic-account"]', "queue_urls item 'clinic-account' is invalid; allowed: an SQS"),
        (
            "NOTIFIER_QUEUE_URLS",
            '["https://q/a", "https://q/a"]',
            "queue_urls has duplicates; allowed: each queue once",
        ),
        ("NOTIFIER_SES__FROM_ADDRESS", "clinic", "from_address = 'clinic' is invalid; allowed: an email address"),
        ("NOTIFIER_BATCH_SIZE", "11", "batch_size\n  Input should be less than or equal to 10"),
        ("NOTIFIER_WAIT_SECONDS", "21", "wait_seconds\n  Input should be less than or equal to 20"),
        ("NOTIFIER_SHUTDOWN_TIMEOUT_SECONDS", "0", "shutdown_timeout_seconds\n  Input should be greater than 0"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(env, key, value, expected):
    """Each case changes one variable of a valid environment (test_defaults_and_nested_groups) and gets one error."""
    env.setenv(key, value)
    with pytest.raises(ValidationError) as error:
        NotifierSettings()
    assert error.value.error_count() == 1 and expected in str(error.value), str(error.value)


def test_the_shutdown_timeout_must_outlast_a_long_poll_and_its_batch(env):
    assert NotifierSettings().shutdown_timeout_seconds == 30
    env.setenv("NOTIFIER_SHUTDOWN_TIMEOUT_SECONDS", "29")
    with pytest.raises(
        ValidationError,
        match=r"NOTIFIER_SHUTDOWN_TIMEOUT_SECONDS\) = 29 is invalid; allowed: at "
        r"least wait_seconds \+ 10 = 30",
    ):
        NotifierSettings()
    env.setenv("NOTIFIER_WAIT_SECONDS", "5")
    assert NotifierSettings().shutdown_timeout_seconds == 29


def test_settings_are_built_once_not_at_import(env):
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()


def test_credentials_come_from_the_rds_secret(postgres, aws_endpoint):
    host, port = postgres.host, postgres.port
    role = f"notifier_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        DatabaseSettings(host=host, port=port, name="postgres", user="postgres", sslmode="disable"),
        AwsSettings(),
        "test",
    )
    with admin.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'from-the-secret'"))
    admin.dispose()
    secrets = boto3.client("secretsmanager", endpoint_url=aws_endpoint, region_name=REGION)
    arn = secrets.create_secret(
        Name=f"rds!{role}", SecretString=json.dumps({"username": role, "password": "from-the-secret"})
    )["ARN"]
    aws = AwsSettings(region=REGION, endpoint_url=aws_endpoint)
    engine = create_engine(
        DatabaseSettings(host=host, port=port, name="postgres", user="not-this-one", sslmode="disable", secret_arn=arn),
        aws,
        "test",
    )
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == role
    finally:
        engine.dispose()
