"""The file processor in the app tests: real PDFs, a processor on a clinic's database and moto, the outbox relayed."""

from __future__ import annotations

import io

from pypdf import PdfWriter
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from clinic_api.outbox import relay_once
from clinic_api.settings import QueueSettings
from file_processor.metrics import Metrics
from file_processor.store import ExamStore
from file_processor.worker import FileProcessor, make_checker


def pdf_bytes(pages: int = 1) -> bytes:
    """A real PDF, as a lab's software would write it."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(595, 842)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_processor(engine: Engine, clinic_aws, **overrides) -> FileProcessor:
    options = {
        "sqs": clinic_aws.client("sqs"),
        "s3": clinic_aws.client("s3"),
        "store": ExamStore(engine),
        "queue_url": clinic_aws.queue_urls["file"],
        "bucket": clinic_aws.bucket,
        "upload_prefix": "exams/",
        "quarantine_prefix": "quarantine/",
        "max_file_bytes": 20 * 1024 * 1024,
        "checker": make_checker(max_pages=1000, timeout=15, memory_mb=256),
        "wait_seconds": 0,
        "metrics": Metrics(),
        **overrides,
    }
    return FileProcessor(**options)


def relay(engine: Engine, clinic_aws) -> int:
    """The API's outbox relay, one pass: every pending event onto its queue."""
    queues = QueueSettings(**{d.replace("-", "_"): url for d, url in clinic_aws.queue_urls.items()})
    with Session(engine) as session:
        return relay_once(session, clinic_aws.client("sqs"), queues)


def drain(processor: FileProcessor) -> list[str]:
    """Process what the file queue holds now; the outcome of each message."""
    outcomes = []
    while messages := processor.receive():
        outcomes += [processor.process(m) for m in messages]
    return outcomes


def check_uploads(engine: Engine, clinic_aws) -> list[str]:
    """What the deployed platform does after an upload: the relay sends file.uploaded, the processor checks it."""
    relay(engine, clinic_aws)
    return drain(make_processor(engine, clinic_aws))
