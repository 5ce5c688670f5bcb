"""JSON logs with the request id of the request being served."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id: ContextVar[str] = ContextVar("request_id", default="")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
# PostgreSQL explains a failed constraint with the row's values ("DETAIL:  Key (email)=(ana@example.org) already
# exists", "Failing row contains (..., $argon2id$...)") and psycopg puts that line in the error's text, so in every
# traceback of it. SQLAlchemy's `hide_parameters` covers the statement's parameters, not this.
_SERVER_DETAIL = re.compile(r"^DETAIL: .*$", re.MULTILINE)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if rid := request_id.get():
            doc["request_id"] = rid
        doc.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)

    def formatException(self, ei) -> str:  # noqa: N802 - logging.Formatter's name
        return _SERVER_DETAIL.sub("DETAIL:  (hidden: it may quote patients' data)", super().formatException(ei))


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is now (test runners and servers swap it)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = _StdoutHandler()
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime


class Outage:
    """How a background loop (the outbox relay, the reminders) logs a run of failed passes without flooding the log:
    the first failure with its traceback; while it lasts, one line at most every `every` seconds with how many passes
    have failed and for how long; one line when a pass works again. A loop retrying every second while the database
    is down otherwise writes a full traceback a second."""

    def __init__(self, logger: logging.Logger, what: str, every: float = 60.0, clock=time.monotonic):
        self.log, self.what, self.every, self.clock = logger, what, every, clock
        self.failures = 0
        self.since = self.reported = 0.0

    def failed(self) -> None:
        """Called in the `except` block of the failed pass."""
        now = self.clock()
        self.failures += 1
        if self.failures == 1:
            self.since = self.reported = now
            self.log.exception("%s failed; retrying", self.what)
        elif now - self.reported >= self.every:
            self.reported = now
            # The error's class only: its text may quote SQL, as the 503 handler's line does not either.
            error = sys.exc_info()[0]
            self.log.warning(
                "%s still failing: %d failed passes in %.0f s (last: %s)",
                self.what,
                self.failures,
                now - self.since,
                error.__name__ if error else "unknown",
                extra={"failures": self.failures},
            )

    def succeeded(self) -> None:
        """Called after a pass that worked."""
        if self.failures:
            self.log.info(
                "%s recovered after %d failed passes in %.0f s",
                self.what,
                self.failures,
                self.clock() - self.since,
                extra={"failures": self.failures},
            )
            self.failures = 0
