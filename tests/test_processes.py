"""The shared process helpers against a real HTTP server and real child processes."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from clothing.processes import free_port, poll_until_ok


class _Flaky(http.server.BaseHTTPRequestHandler):
    """503 for the first two polls, then 200: a server that is still loading."""

    polls = 0

    def do_GET(self) -> None:
        type(self).polls += 1
        self.send_response(200 if self.polls > 2 else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def flaky_url() -> Iterator[str]:
    _Flaky.polls = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/readyz"
    finally:
        server.shutdown()
        server.server_close()


def test_waits_through_not_ready_answers_until_200(flaky_url: str) -> None:
    assert poll_until_ok(flaky_url, None, timeout=10, interval=0.01) is None
    assert _Flaky.polls == 3


def test_a_child_that_exits_is_reported_at_once() -> None:
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    child.wait()
    began = time.monotonic()
    failure = poll_until_ok(f"http://127.0.0.1:{free_port()}/readyz", child, timeout=30)
    assert failure is not None
    assert "exited with 3" in failure
    assert time.monotonic() - began < 5


def test_nothing_listening_times_out_with_the_last_error() -> None:
    failure = poll_until_ok(f"http://127.0.0.1:{free_port()}/readyz", None, timeout=0.3)
    assert failure is not None
    assert "not ready after 0.3 s" in failure
    assert "Connection refused" in failure or "ConnectionRefused" in failure
