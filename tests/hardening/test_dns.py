"""Host name lookups that never finish: each request fails at its deadline, slow names can
hold only the resolver's own threads, and once those are busy a lookup fails at once."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from clothing.gateway.addresses import AddrInfo, BoundedResolver
from clothing.gateway.errors import ImageHostFailed

from .payloads import slow_lookup


async def test_slow_names_hold_only_the_resolvers_threads() -> None:
    release = threading.Event()
    resolver = BoundedResolver(threads=2, timeout=0.3, lookup=slow_lookup(release))
    try:
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(resolver(f"slow{index}.test", 80) for index in range(2)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
        print(f"2 slow names: {[type(o).__name__ for o in outcomes]} after {elapsed:.2f} s")
        assert all(isinstance(o, ImageHostFailed) for o in outcomes)
        assert elapsed < 2.0
        # Both threads are still inside getaddrinfo: the next lookup fails at once.
        assert resolver.busy
        started = time.monotonic()
        with pytest.raises(ImageHostFailed, match="busy"):
            await resolver("fast.test", 80)
        assert time.monotonic() - started < 0.1
        release.set()  # the slow lookups return; their threads are free again
        for _ in range(100):
            if not resolver.busy:
                break
            await asyncio.sleep(0.02)
        assert [str(a) for a in await resolver("fast.test", 80)] == ["93.184.216.34"]
    finally:
        release.set()
        resolver.close()


async def test_an_unresolvable_name_is_a_clean_failure() -> None:
    def fails(host: str, port: int) -> list[AddrInfo]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    resolver = BoundedResolver(threads=1, timeout=1.0, lookup=fails)
    try:
        with pytest.raises(ImageHostFailed, match="cannot resolve"):
            await resolver("nowhere.test", 80)
        assert not resolver.busy
    finally:
        resolver.close()
