"""No one image host or DNS zone can take every shared resource of the gateway.

- Downloads from one host (address) at once are capped: past the cap a fetch is
  refused at once (429) instead of holding an in-flight slot while the host
  trickles (before: every one of them waited out the fetch deadline).
- The bytes all downloads hold until decoded share one process-wide budget
  (before: each request had its own, 64 x 40 MiB against a 512 MiB pod).
- One domain's names may take a quarter of the resolver threads (before: names
  under one slow DNS server could take all of them).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import AsyncIterator

import pytest

from clothing.gateway.addresses import AddressPolicy, AddrInfo, AllowList, BoundedResolver
from clothing.gateway.errors import GatewayError, ImageHostFailed
from clothing.gateway.fetch import FetchLimits, ImageFetcher, host_key, new_image_client
from clothing.gateway.http_get import ByteBudget
from tests.fixtures import raw_tcp_server

IMAGE_BYTES = 300 * 1024


async def _host(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request_line = (await reader.readline()).decode()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    path = request_line.split(" ")[1]
    try:
        if path == "/trickle":  # a byte a second: holds its fetch to the deadline
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(1000):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(1)
        elif path == "/slow-image":  # most of the body at once, the rest after a pause
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % IMAGE_BYTES)
            writer.write(b"\xff" * (IMAGE_BYTES - 10))
            await writer.drain()
            await asyncio.sleep(1.0)
            writer.write(b"\xff" * 10)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with raw_tcp_server(_host) as listening:
        yield listening


def _fetcher(port: int, budget: ByteBudget | None = None, **limits: object) -> ImageFetcher:
    fetch_limits = FetchLimits(total_timeout=3.0, read_timeout=2.0, **limits)  # type: ignore[arg-type]
    policy = AddressPolicy(AllowList.parse([f"127.0.0.1:{port}"]))
    return ImageFetcher(new_image_client(fetch_limits), policy, fetch_limits, budget)


async def _timed_fetch(fetcher: ImageFetcher, url: str) -> tuple[str, float]:
    started = time.monotonic()
    try:
        result = await fetcher.fetch(url)
        result.lease.release()
        outcome = "ok"
    except GatewayError as error:
        outcome = type(error).__name__
    return outcome, time.monotonic() - started


async def test_one_trickling_host_gets_a_few_fetches_at_once(port: int) -> None:
    fetcher = _fetcher(port, max_host_fetches=4)
    url = f"http://127.0.0.1:{port}/trickle"
    outcomes = await asyncio.gather(*(_timed_fetch(fetcher, url) for _ in range(20)))
    refused = [elapsed for outcome, elapsed in outcomes if outcome == "Overloaded"]
    print(
        f"20 fetches from one trickling host, 4 at once: {len(refused)} refused, slowest refusal "
        f"{max(refused, default=0):.2f} s; others: "
        f"{sorted({o for o, _ in outcomes if o != 'Overloaded'})}"
    )
    assert len(refused) == 16
    assert max(refused) < 0.5


def test_an_ipv6_host_is_its_64() -> None:
    one = host_key(ipaddress.ip_address("2001:db8:1:2::1"))
    other = host_key(ipaddress.ip_address("2001:db8:1:2:ffff::9"))
    assert one == other != host_key(ipaddress.ip_address("2001:db8:1:3::1"))


async def test_downloads_share_one_budget(port: int) -> None:
    budget = ByteBudget(2 * IMAGE_BYTES)
    fetcher = _fetcher(port, budget)
    url = f"http://127.0.0.1:{port}/slow-image"
    outcomes = await asyncio.gather(*(_timed_fetch(fetcher, url) for _ in range(6)))
    names = sorted(outcome for outcome, _ in outcomes)
    print(f"6 downloads of 300 KB against a 600 KB budget: {names}")
    assert names.count("ok") >= 1
    assert "Overloaded" in names
    assert budget.held == 0  # every lease given back, refused or not
    assert (await _timed_fetch(fetcher, url))[0] == "ok"


async def test_one_domain_gets_a_quarter_of_the_resolver_threads() -> None:
    release = threading.Event()

    def lookup(host: str, port: int) -> list[AddrInfo]:
        if host.endswith(".slow.test"):
            release.wait(10)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    resolver = BoundedResolver(threads=8, timeout=0.3, lookup=lookup)
    try:
        slow = [resolver(f"n{i}.slow.test", 80) for i in range(8)]
        outcomes = await asyncio.gather(*slow, return_exceptions=True)
        busy = sum(isinstance(o, ImageHostFailed) and "busy" in str(o) for o in outcomes)
        started = time.monotonic()
        fast = await resolver("images.example", 80)
        print(
            f"8 lookups under one slow domain: {8 - busy} took a thread, {busy} refused; "
            f"another domain resolved in {time.monotonic() - started:.3f} s"
        )
        assert busy == 6
        assert [str(a) for a in fast] == ["93.184.216.34"]
    finally:
        release.set()
        resolver.close()
