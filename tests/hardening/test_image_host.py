"""A misbehaving image host on 127.0.0.1: every case ends in the documented error, on time.

The host is a raw asyncio TCP server, so it can do what a well-behaved HTTP
server library never would: trickle bytes, never answer, reset the
connection, lie in Content-Length, and redirect in circles.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator

import pytest

from clothing.gateway.addresses import AddressPolicy, AllowList
from clothing.gateway.errors import GatewayError, ImageHostFailed, TooLarge, UpstreamTimeout
from clothing.gateway.fetch import FetchLimits, ImageFetcher, new_image_client
from clothing.gateway.urls import parse_image_url
from tests.fixtures import raw_tcp_server
from tests.images import noise_png

LIMITS = FetchLimits(
    max_bytes=64 * 1024, max_redirects=3, connect_timeout=1.0, read_timeout=1.0, total_timeout=2.5
)
IMAGE = noise_png()


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


async def _route(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request_line = (await reader.readline()).decode()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    path = request_line.split(" ")[1]
    if path == "/ok.png":
        writer.write(_head("200 OK", {"Content-Length": str(len(IMAGE))}) + IMAGE)
    elif path == "/trickle.png":
        writer.write(_head("200 OK", {"Content-Length": str(len(IMAGE))}))
        for byte in IMAGE:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.3)
    elif path == "/silent":
        await asyncio.sleep(30)
    elif path == "/reset":
        sock = writer.get_extra_info("socket")
        # SO_LINGER 0: close() sends a TCP RST instead of a FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        return
    elif path == "/reset-mid-body":
        writer.write(_head("200 OK", {"Content-Length": str(len(IMAGE))}) + IMAGE[:50])
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        return
    elif path == "/short-body.png":
        # Announces more bytes than it sends, then closes.
        writer.write(_head("200 OK", {"Content-Length": str(len(IMAGE) + 5000)}) + IMAGE)
    elif path == "/long-body.png":
        # Announces fewer bytes than it sends: the extra must not be taken as image.
        writer.write(_head("200 OK", {"Content-Length": "10"}) + IMAGE)
    elif path == "/huge-announced":
        writer.write(_head("200 OK", {"Content-Length": str(10**12)}))
        await asyncio.sleep(30)
    elif path == "/endless":
        writer.write(_head("200 OK", {"Transfer-Encoding": "chunked"}))
        chunk = b"\xff" * 8192
        for _ in range(1000):
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
    elif path in ("/loop-a", "/loop-b"):
        target = "/loop-b" if path == "/loop-a" else "/loop-a"
        writer.write(_head("302 Found", {"Location": target, "Content-Length": "0"}))
    elif path == "/self":
        writer.write(_head("301 Moved", {"Location": "/self", "Content-Length": "0"}))
    elif path == "/no-location":
        writer.write(_head("302 Found", {"Content-Length": "0"}))
    elif path == "/garbage-status":
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    with _quietly():
        await writer.drain()
        writer.close()


class _quietly:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], ConnectionError)  # type: ignore[arg-type]


@pytest.fixture
async def host() -> AsyncIterator[str]:
    async with raw_tcp_server(_route) as port:
        yield f"http://127.0.0.1:{port}"


async def _fetch(url: str) -> tuple[bytes | GatewayError, float]:
    policy = AddressPolicy(AllowList.parse([f"127.0.0.1:{parse_image_url(url).port}"]))
    fetcher = ImageFetcher(new_image_client(LIMITS), policy, LIMITS)
    started = time.monotonic()
    try:
        result: bytes | GatewayError = (await fetcher.fetch(url)).content
    except GatewayError as error:
        result = error
    return result, time.monotonic() - started


async def test_a_good_host_still_works(host: str) -> None:
    result, _ = await _fetch(f"{host}/ok.png")
    assert result == IMAGE


@pytest.mark.parametrize(
    ("path", "error", "status", "fragment"),
    [
        ("/trickle.png", UpstreamTimeout, 504, "2.5 s"),
        ("/silent", UpstreamTimeout, 504, "timed out"),
        ("/reset", ImageHostFailed, 502, "failed"),
        ("/reset-mid-body", ImageHostFailed, 502, "download failed"),
        ("/short-body.png", ImageHostFailed, 502, "download failed"),
        ("/huge-announced", TooLarge, 413, "limit"),
        ("/endless", TooLarge, 413, "limit"),
        ("/loop-a", ImageHostFailed, 502, "more than 3 redirects"),
        ("/self", ImageHostFailed, 502, "more than 3 redirects"),
        ("/no-location", ImageHostFailed, 502, "Location"),
        ("/garbage-status", ImageHostFailed, 502, "failed"),
    ],
)
async def test_misbehaving_host_ends_in_the_documented_error_on_time(
    host: str, path: str, error: type[GatewayError], status: int, fragment: str
) -> None:
    result, elapsed = await _fetch(f"{host}{path}")
    assert isinstance(result, error), (path, result)
    assert result.status == status
    assert fragment in result.message, (path, result.message)
    # Every case ends within the total fetch limit (plus scheduling slack).
    assert elapsed < LIMITS.total_timeout + 1.0, (path, elapsed)


async def test_body_longer_than_announced_is_cut_at_content_length(host: str) -> None:
    result, _ = await _fetch(f"{host}/long-body.png")
    # Framing stops at Content-Length: the fetcher sees 10 bytes, which then fail to decode.
    assert result == IMAGE[:10]
