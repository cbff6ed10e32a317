"""The downloader's framing and limits against a raw asyncio server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from clothing.gateway.http_get import (
    MAX_HEAD_BYTES,
    BodyTooLarge,
    HttpGetError,
    HttpGetter,
    HttpGetTimeout,
)
from tests.fixtures import raw_tcp_server

BODY = bytes(range(256)) * 40  # 10 KiB
ANSWERS: dict[str, bytes] = {
    "/length": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY),
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"%x\r\n%s\r\n" % (1024, BODY[i : i + 1024]) for i in range(0, len(BODY), 1024))
    + b"0\r\n\r\n",
    "/until-close": b"HTTP/1.1 200 OK\r\n\r\n" + BODY,
    "/not-found": b"HTTP/1.1 404 Not Found\r\nContent-Length: 100000000\r\n\r\n",
    "/huge-head": b"HTTP/1.1 200 OK\r\nX-Filler: " + b"a" * (MAX_HEAD_BYTES + 10),
    "/cut-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + BODY[:100],
    "/slow-head": b"",
}


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[bytes]]]:
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        requests.append(head)
        path = head.split(b" ")[1].decode()
        if path == "/slow-head":
            await asyncio.sleep(5)
        writer.write(ANSWERS[path])
        await writer.drain()

    async with raw_tcp_server(answer) as port:
        yield port, requests


async def _get(port: int, path: str, *, cap: int = 1 << 20, read_timeout: float = 2.0) -> bytes:
    getter = HttpGetter(connect_timeout=1.0, read_timeout=read_timeout)
    response = await getter.get(
        "127.0.0.1", port, host_header="images.test", target=path, tls_name=None, max_bytes=cap
    )
    return b"%d:" % response.status + response.body


@pytest.mark.parametrize("path", ["/length", "/chunked", "/until-close"])
async def test_every_framing_gives_the_whole_body(
    server: tuple[int, list[bytes]], path: str
) -> None:
    port, requests = server
    assert await _get(port, path) == b"200:" + BODY
    request = requests[0].decode()
    assert request.startswith(f"GET {path} HTTP/1.1\r\n")
    assert "Host: images.test\r\n" in request
    assert "Connection: close\r\n" in request
    assert "accept-encoding" not in request.lower()


async def test_other_statuses_return_without_reading_the_body(
    server: tuple[int, list[bytes]],
) -> None:
    assert await _get(server[0], "/not-found", cap=10) == b"404:"


@pytest.mark.parametrize("path", ["/length", "/chunked", "/until-close"])
async def test_a_body_over_the_cap_is_refused(server: tuple[int, list[bytes]], path: str) -> None:
    with pytest.raises(BodyTooLarge) as caught:
        await _get(server[0], path, cap=len(BODY) - 1)
    assert caught.value.announced == (len(BODY) if path == "/length" else None)


async def test_oversized_headers_are_refused(server: tuple[int, list[bytes]]) -> None:
    with pytest.raises(HttpGetError, match="headers too large"):
        await _get(server[0], "/huge-head")


async def test_a_body_cut_short_is_an_error_in_the_body(server: tuple[int, list[bytes]]) -> None:
    with pytest.raises(HttpGetError, match="end of the body") as caught:
        await _get(server[0], "/cut-chunked")
    assert caught.value.in_body


async def test_a_silent_host_times_out_per_read(server: tuple[int, list[bytes]]) -> None:
    with pytest.raises(HttpGetTimeout) as caught:
        await _get(server[0], "/slow-head", read_timeout=0.3)
    assert not caught.value.in_body
