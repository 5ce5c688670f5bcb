"""``python -m file_processor``: poll the file queue until SIGTERM/SIGINT, then finish the message in hand and exit 0
within ``shutdown_timeout_seconds`` (FILE_PROCESSOR_SHUTDOWN_TIMEOUT_SECONDS)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from clinic_common import health

from .app import build_processor, configure_logging
from .settings import get_settings

log = logging.getLogger("file_processor")


def main() -> int:
    settings = get_settings()
    configure_logging(settings)
    processor = build_processor(settings)
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        if not stop.is_set():
            log.info("stopping: finishing the message in hand", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    server = health.make_server(
        alive=processor.alive,
        ping=processor.store.ping,
        registry=processor.metrics.registry,
        host=settings.http_host,
        port=settings.http_port,
        stopping=stop.is_set,
    )
    health.serve_in_background(server)
    processor.start(stop)
    log.info("file processor started", extra={"http_port": settings.http_port})
    while not stop.wait(1.0):
        if not processor.alive():
            log.error("the poller thread died; exiting so the process is restarted")
            server.shutdown()
            return 1
    stopping_since = time.monotonic()
    finished = processor.join(settings.shutdown_timeout_seconds)
    server.shutdown()
    if not finished:
        log.error(
            "shutdown timeout passed with a message unfinished; it returns after the visibility timeout",
            extra={"shutdown_timeout_seconds": settings.shutdown_timeout_seconds},
        )
        sys.stdout.flush()
        os._exit(1)  # the poller may be blocked in a call that cannot be interrupted, as the notifier explains
    processor.store.engine.dispose()
    log.info("file processor stopped", extra={"shutdown_seconds": round(time.monotonic() - stopping_since, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
