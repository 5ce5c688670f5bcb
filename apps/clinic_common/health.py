"""The queue workers' probe server: /healthz (the poller threads run), /readyz (PostgreSQL answers with the worker's
tables), /metrics (Prometheus). A plain thread beside the workers: they have no web framework to hang it on."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("clinic.health")


def make_server(
    *,
    alive: Callable[[], bool],
    ping: Callable[[], None],
    registry: CollectorRegistry,
    host: str,
    port: int,
    stopping: Callable[[], bool] = lambda: False,
) -> ThreadingHTTPServer:
    """`alive`: the pollers still run; `ping`: raises unless the database answers with the worker's tables."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                # A dead poller thread means this process no longer consumes its queue: let it be restarted.
                ok = alive()
                self._reply(200 if ok else 503, b'{"status":"ok"}' if ok else b'{"status":"pollers stopped"}')
            elif path == "/readyz":
                if stopping():
                    self._reply(503, b'{"status":"stopping"}')
                    return
                try:
                    ping()
                except Exception as exc:
                    log.warning("readiness check failed", extra={"error": type(exc).__name__})
                    self._reply(503, b'{"status":"database unavailable or not migrated"}')
                else:
                    self._reply(200, b'{"status":"ready"}')
            elif path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            else:
                self._reply(404, b'{"detail":"not found"}')

        def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: not worth a line
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve_in_background(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="health-http", daemon=True)
    thread.start()
    return thread
