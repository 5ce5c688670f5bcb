"""Wiring: settings -> engine, AWS clients, store, worker; JSON logs."""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from clinic_common.aws import client
from clinic_common.database import create_engine
from clinic_common.logging import configure_logging as _configure_logging

from .retry import RetryPolicy
from .settings import NotifierSettings
from .store import SentEventStore
from .worker import Notifier


def configure_logging(settings: NotifierSettings) -> None:
    _configure_logging(service="notifier", level=settings.log_level)
    logging.getLogger("botocore").setLevel(logging.WARNING)


def build_engine(settings: NotifierSettings) -> Engine:
    return create_engine(settings.database, settings.aws, application_name="clinic-notifier")


def build_notifier(settings: NotifierSettings) -> Notifier:
    engine = build_engine(settings)
    return Notifier(
        # SES calls are retried by the worker's own policy (1 s, 2 s): botocore must not multiply it.
        sqs=client("sqs", settings.aws),
        ses=client("sesv2", settings.aws, retries={"max_attempts": 1}),
        store=SentEventStore(engine, claim_lease_seconds=settings.claim_lease_seconds),
        queue_urls=settings.queue_urls,
        from_address=settings.ses.from_address,
        configuration_set=settings.ses.configuration_set,
        batch_size=settings.batch_size,
        wait_seconds=settings.wait_seconds,
        retry=RetryPolicy(),
        send_concurrency=settings.send_concurrency,
    )
