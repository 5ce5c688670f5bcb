"""File processor settings from the environment: prefix ``FILE_PROCESSOR_``, nested groups joined by ``__``.

FILE_PROCESSOR_QUEUE_URL=https://sqs.../clinic-dev-events-file-...   the queue the API's outbox sends file.uploaded to
FILE_PROCESSOR_BUCKET=clinic-exams-...                               the exam-results bucket
FILE_PROCESSOR_UPLOAD_PREFIX=exams/   FILE_PROCESSOR_QUARANTINE_PREFIX=quarantine/
FILE_PROCESSOR_MAX_FILE_BYTES=20971520  FILE_PROCESSOR_MAX_PAGES=1000
FILE_PROCESSOR_CHECK_TIMEOUT_SECONDS=15  FILE_PROCESSOR_CHECK_MEMORY_MB=256
FILE_PROCESSOR_DATABASE__...  the shared DatabaseSettings (clinic_common), incl. SECRET_ARN for the RDS secret
FILE_PROCESSOR_AWS__...       the shared AwsSettings (clinic_common): REGION, ENDPOINT_URL
FILE_PROCESSOR_HTTP_PORT=8080  FILE_PROCESSOR_WAIT_SECONDS=20  FILE_PROCESSOR_SHUTDOWN_TIMEOUT_SECONDS=45
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from clinic_common.aws import AwsSettings
from clinic_common.database import DatabaseSettings

# After the check: the quarantine copy, the database transaction and the delete of the message.
SHUTDOWN_MESSAGE_SECONDS = 10
# The queues' visibility timeout (components/messaging.py QueuePolicy): a message must be done well within it, or it
# is delivered again while still being processed (harmless, but it counts towards the DLQ's maxReceiveCount).
QUEUE_VISIBILITY_SECONDS = 30


class FileProcessorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FILE_PROCESSOR_", env_nested_delimiter="__", extra="ignore")

    queue_url: str
    """The file queue (file.uploaded events)."""
    bucket: str
    """The exam-results bucket."""
    upload_prefix: str = "exams/"
    """Where the API stores results (the API's CLINIC_STORAGE__PREFIX); an event naming a key elsewhere is poison."""
    quarantine_prefix: str = "quarantine/"
    """Where a file that fails the check is moved: `<quarantine_prefix><original key>`."""
    max_file_bytes: int = Field(20 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    """A larger object is quarantined without being read (the API refuses uploads above 20 MiB by default)."""
    max_pages: int = Field(1000, ge=1, le=100_000)
    """A PDF with more pages is quarantined."""
    check_timeout_seconds: float = Field(15.0, gt=0, le=20)
    """Wall-clock limit of the PDF check (a child process, killed at the limit): it must end well within the queue's
    30 s visibility timeout."""
    check_memory_mb: int = Field(256, ge=64, le=2048)
    """Address-space limit of the PDF check's child process: a decompression bomb fails there, not in the pod."""
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=1, le=65535)
    wait_seconds: int = Field(20, ge=0, le=20)
    """Long-poll wait (SQS allows at most 20 s)."""
    shutdown_timeout_seconds: float = Field(45.0, gt=0, le=600)
    """After SIGTERM: time to finish the long poll in flight and the message it brings, then the process exits."""
    log_level: str = "INFO"

    @field_validator("queue_url")
    @classmethod
    def _queue(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"queue_url (FILE_PROCESSOR_QUEUE_URL) = {value!r} is invalid; allowed: an SQS queue URL")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("bucket (FILE_PROCESSOR_BUCKET) is empty; allowed: the exam-results bucket's name")
        return value

    @model_validator(mode="after")
    def _rules(self) -> FileProcessorSettings:
        for key, prefix in (("upload_prefix", self.upload_prefix), ("quarantine_prefix", self.quarantine_prefix)):
            if not prefix.endswith("/") or prefix.startswith("/") or len(prefix) < 2:
                raise ValueError(
                    f"{key} (FILE_PROCESSOR_{key.upper()}) = {prefix!r} is invalid; allowed: a key prefix such as "
                    "'exams/' (ending in '/', not starting with one)"
                )
        if self.quarantine_prefix.startswith(self.upload_prefix) or self.upload_prefix.startswith(
            self.quarantine_prefix
        ):
            raise ValueError(
                f"quarantine_prefix = {self.quarantine_prefix!r} is invalid with upload_prefix = "
                f"{self.upload_prefix!r}; allowed: prefixes that do not contain each other (a set-aside file must "
                "never be readable where the API serves results from)"
            )
        least = self.wait_seconds + self.check_timeout_seconds + SHUTDOWN_MESSAGE_SECONDS
        if self.shutdown_timeout_seconds < least:
            raise ValueError(
                f"shutdown_timeout_seconds (FILE_PROCESSOR_SHUTDOWN_TIMEOUT_SECONDS) = "
                f"{self.shutdown_timeout_seconds:g} is invalid; allowed: at least wait_seconds + "
                f"check_timeout_seconds + {SHUTDOWN_MESSAGE_SECONDS} = {least:g}: a long poll in flight at SIGTERM "
                "returns within wait_seconds, and the message it brings must still be checked and recorded"
            )
        return self


@lru_cache
def get_settings() -> FileProcessorSettings:
    return FileProcessorSettings()
