"""Gateway test helpers: a real image server on 127.0.0.1 and a gRPC stand-in."""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc

from clothing.proto.tensorflow_serving.apis import prediction_service_pb2_grpc


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    trickle_seconds: float = 0.0  # pause between single bytes
    chunked: bool = False  # no Content-Length


@dataclass
class ImageServer:
    """A threaded HTTP(S) server on 127.0.0.1 answering from ``routes``."""

    port: int
    scheme: str
    routes: dict[str, Route]
    host_headers: list[str]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


def _handler(routes: dict[str, Route], host_headers: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            host_headers.append(self.headers.get("Host", ""))
            route = routes.get(self.path)
            if route is None:
                route = Route(b"not found", 404)
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(route.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                self._write_body(route)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                return

        def _write_body(self, route: Route) -> None:
            if route.chunked:
                for start in range(0, len(route.body), 65536):
                    piece = route.body[start : start + 65536]
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            elif route.trickle_seconds:
                for byte in route.body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(route.trickle_seconds)
            else:
                self.wfile.write(route.body)

    return Handler


@contextlib.contextmanager
def serve_images(
    routes: dict[str, Route], *, tls: ssl.SSLContext | None = None
) -> Iterator[ImageServer]:
    host_headers: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(routes, host_headers))
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield ImageServer(
            int(server.server_address[1]), "https" if tls else "http", routes, host_headers
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.asynccontextmanager
async def serve_prediction_service(servicer: Any) -> AsyncIterator[str]:
    """``servicer`` as the only service of a gRPC server on loopback; yields its address."""
    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(  # type: ignore[no-untyped-call]
        servicer, server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
