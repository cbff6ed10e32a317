"""A static file server for the benchmark's photo URLs, with a listen backlog to match.

Python's ``http.server`` listens with a backlog of 5 connections. A client that opens
16 or more connections at once (the gateway fetches concurrently) then sees SYNs
dropped and retried after a one-second timeout, which lands in its p99 as an artefact
of the image host, not of the system measured. Any real image host accepts more.

Run as ``python -m clothing.benchmarks.image_server PORT DIRECTORY``.
"""

from __future__ import annotations

import functools
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clothing.processes import LOOPBACK


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per photo would cost the run more than serving it


class ImageServer(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


def main(argv: list[str] | None = None) -> int:
    port, directory = (argv if argv is not None else sys.argv[1:])[:2]
    handler = functools.partial(_QuietHandler, directory=directory)
    with ImageServer((LOOPBACK, int(port)), handler) as server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
