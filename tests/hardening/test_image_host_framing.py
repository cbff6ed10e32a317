"""An image host that hides bytes in the HTTP framing, on 127.0.0.1: a 4-byte chunked
body followed by trailer fields without end, or chunks whose extensions are huge.

Trailers and chunk extensions are neither headers nor body, so a cap on each of
those alone never sees them. Measured before the fix: the fetch kept every trailer
until the total deadline, the test process growing by hundreds of MB.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest

from clothing.gateway.addresses import AddressPolicy, AllowList
from clothing.gateway.errors import GatewayError, ImageHostFailed
from clothing.gateway.fetch import FetchLimits, ImageFetcher, new_image_client
from tests.fixtures import raw_tcp_server

from .helpers import peak_rss_kib, process_stats, reset_peak_rss

LIMITS = FetchLimits(max_bytes=1024 * 1024, read_timeout=2.0, total_timeout=6.0)
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


async def _host(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request_line = (await reader.readline()).decode()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    path = request_line.split(" ")[1]
    writer.write(CHUNKED)
    try:
        if path == "/trailers":
            writer.write(b"4\r\nGIF8\r\n0\r\n")
            value = b"v" * 200
            for round_ in range(100_000):  # every name new: none replaces another
                writer.write(b"".join(b"X-%d-%d: %s\r\n" % (round_, i, value) for i in range(2000)))
                await writer.drain()
        elif path == "/extensions":
            block = b"".join(b"1;e=" + b"x" * 4000 + b"\r\nA\r\n" for _ in range(64))
            for _ in range(100_000):
                writer.write(block)
                await writer.drain()
    except ConnectionError:
        pass
    writer.close()


@pytest.fixture
async def host() -> AsyncIterator[int]:
    async with raw_tcp_server(_host) as port:
        yield port


@pytest.mark.parametrize("path", ["/trailers", "/extensions"])
async def test_framing_bytes_are_capped(host: int, path: str) -> None:
    policy = AddressPolicy(AllowList.parse([f"127.0.0.1:{host}"]))
    fetcher = ImageFetcher(new_image_client(LIMITS), policy, LIMITS)
    pid = os.getpid()
    before = process_stats(pid).rss_kib
    reset_peak_rss(pid)
    started = time.monotonic()
    outcome: GatewayError | bytes
    try:
        outcome = (await fetcher.fetch(f"http://127.0.0.1:{host}{path}")).content
    except GatewayError as error:
        outcome = error
    elapsed = time.monotonic() - started
    growth_mb = (peak_rss_kib(pid) - before) / 1024
    print(f"{path}: {outcome!r} after {elapsed:.2f} s, peak RSS +{growth_mb:.0f} MB")
    assert isinstance(outcome, ImageHostFailed), outcome
    assert elapsed < 2.0
    assert growth_mb < 40
