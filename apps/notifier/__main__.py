"""``python -m notifier``: poll the queues until SIGTERM/SIGINT, then finish the batch in hand and exit 0 within
``shutdown_timeout_seconds`` (NOTIFIER_SHUTDOWN_TIMEOUT_SECONDS)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from clinic_common import health

from .app import build_notifier, configure_logging
from .dead_letters import DeadLetterSampler
from .settings import get_settings

log = logging.getLogger("notifier")


def main() -> int:
    settings = get_settings()
    configure_logging(settings)
    notifier = build_notifier(settings)
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        if not stop.is_set():
            log.info("stopping: finishing the batch in hand", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    server = health.make_server(
        alive=notifier.alive,
        ping=notifier.store.ping,
        registry=notifier.metrics.registry,
        host=settings.http_host,
        port=settings.http_port,
        stopping=stop.is_set,
    )
    health.serve_in_background(server)
    notifier.start(stop)
    DeadLetterSampler(notifier.sqs, settings.queue_urls, notifier.metrics).start(stop)
    log.info("notifier started", extra={"queues": len(settings.queue_urls), "http_port": settings.http_port})
    while not stop.wait(1.0):
        if not notifier.alive():
            log.error("a poller thread died; exiting so the process is restarted")
            stop.set()
            notifier.join(settings.shutdown_timeout_seconds)
            server.shutdown()
            return 1
    # No new receive starts now. A long poll in flight returns within wait_seconds, and the batch it brings (or the
    # one being sent) is sent, recorded and deleted before its thread ends; the queues keep everything else.
    stopping_since = time.monotonic()
    finished = notifier.join(settings.shutdown_timeout_seconds)
    server.shutdown()
    if not finished:
        log.error(
            "shutdown timeout passed with a batch unfinished; its messages return after the visibility "
            "timeout, and an email SES accepted without being recorded is sent once more",
            extra={"shutdown_timeout_seconds": settings.shutdown_timeout_seconds},
        )
        sys.stdout.flush()
        # A send blocked in SES cannot be interrupted, and a normal exit would wait for its thread: exit now, as the
        # kubelet's SIGKILL would, but at the configured time and with the reason logged.
        os._exit(1)
    notifier.store.engine.dispose()
    log.info("notifier stopped", extra={"shutdown_seconds": round(time.monotonic() - stopping_since, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
