"""Wiring: settings -> engine, AWS clients, store, worker; JSON logs."""

from __future__ import annotations

import logging

from clinic_common.aws import client
from clinic_common.database import create_engine
from clinic_common.logging import configure_logging as _configure_logging

from .settings import FileProcessorSettings
from .store import ExamStore
from .worker import FileProcessor, make_checker


def configure_logging(settings: FileProcessorSettings) -> None:
    _configure_logging(service="file-processor", level=settings.log_level)
    logging.getLogger("botocore").setLevel(logging.WARNING)


def build_processor(settings: FileProcessorSettings) -> FileProcessor:
    # No overflow: the platform counts DATABASE__POOL_SIZE connections per pod against the instance's budget
    # (limits.FILE_PROCESSOR_POD_DB_CONNECTIONS), and one message at a time needs no more.
    engine = create_engine(settings.database, settings.aws, application_name="clinic-file-processor", max_overflow=0)
    return FileProcessor(
        sqs=client("sqs", settings.aws),
        s3=client("s3", settings.aws),
        store=ExamStore(engine),
        queue_url=settings.queue_url,
        bucket=settings.bucket,
        upload_prefix=settings.upload_prefix,
        quarantine_prefix=settings.quarantine_prefix,
        max_file_bytes=settings.max_file_bytes,
        checker=make_checker(settings.max_pages, settings.check_timeout_seconds, settings.check_memory_mb),
        wait_seconds=settings.wait_seconds,
    )
