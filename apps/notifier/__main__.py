"""``python -m notifier``: poll the queues until SIGTERM/SIGINT, then finish the batch in hand and exit 0."""
from __future__ import annotations

import logging
import signal
import sys
import threading

from .app import build_notifier, configure_logging
from .dead_letters import DeadLetterSampler
from .health import make_server, serve_in_background
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

    server = make_server(notifier, settings.http_host, settings.http_port, stopping=stop.is_set)
    serve_in_background(server)
    notifier.start(stop)
    DeadLetterSampler(notifier.sqs, settings.queue_urls, notifier.metrics).start(stop)
    log.info("notifier started", extra={"queues": len(settings.queue_urls), "http_port": settings.http_port})
    while not stop.wait(1.0):
        if not notifier.alive():
            log.error("a poller thread died; exiting so the process is restarted")
            stop.set()
            notifier.join(settings.wait_seconds + 60)
            server.shutdown()
            return 1
    # A long poll in flight returns within wait_seconds; its batch is then processed before the thread ends.
    notifier.join(settings.wait_seconds + 60)
    server.shutdown()
    notifier.store.engine.dispose()
    log.info("notifier stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
