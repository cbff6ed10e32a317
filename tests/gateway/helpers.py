"""Gateway test helpers: generated images and a real image server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import io
import ssl
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from PIL import Image

from clothing.proto.tensorflow_serving.apis import prediction_service_pb2_grpc


def solid(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, color)


def halves(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    """A 60x40 image, top half one colour, bottom half another (to see rotations)."""
    image = Image.new("RGB", (60, 40), top)
    image.paste(Image.new("RGB", (60, 20), bottom), (0, 20))
    return image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def jpeg(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> bytes:
    return encode(solid(color, size), "JPEG", quality=95)


def png_rgba() -> bytes:
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    image.paste(Image.new("RGBA", (20, 40), (20, 160, 40, 255)), (0, 0))
    return encode(image, "PNG")


def webp() -> bytes:
    return encode(solid((30, 60, 220)), "WEBP", lossless=True)


def gif_two_frames() -> bytes:
    """A GIF whose first frame is red and second blue: the first must be used."""
    frames = [solid((250, 0, 0)), solid((0, 0, 250))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def jpeg_rotated_180() -> bytes:
    """Stored with red on top, blue below; EXIF orientation 3 says "turn 180°"."""
    exif = Image.Exif()
    exif[0x0112] = 3
    return encode(halves((250, 0, 0), (0, 0, 250)), "JPEG", quality=95, exif=exif.tobytes())


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


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
