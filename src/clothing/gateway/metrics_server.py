"""The Prometheus metrics listener (``--metrics-port``), with timeouts.

``prometheus_client.start_http_server`` gives every connection a thread and no
timeout, so connections that open and say nothing, or trickle a request, each
hold a thread for good. Here a connection gets ``timeout`` seconds per read and
write (then it is closed), and at most ``max_connections`` are served at once
(more are closed at once): a scraper needs one.
"""

from __future__ import annotations

import socket
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 16


class _QuietTimedHandler(WSGIRequestHandler):
    timeout = DEFAULT_TIMEOUT  # socket timeout of each read and write (StreamRequestHandler)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged."""


class _BoundedServer(ThreadingWSGIServer):
    max_connections = DEFAULT_MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(self.max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # past the cap: closed at once
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def start_metrics_server(
    port: int, host: str, registry: CollectorRegistry, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Serve ``registry`` on ``host:port`` from a daemon thread; OSError if it cannot bind."""
    handler = type("MetricsHandler", (_QuietTimedHandler,), {"timeout": timeout})
    server_class = type(
        "MetricsServer",
        (_BoundedServer,),
        {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET},
    )
    server: ThreadingWSGIServer = make_server(
        host, port, make_wsgi_app(registry), server_class, handler_class=handler
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
