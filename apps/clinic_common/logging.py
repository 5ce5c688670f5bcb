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
