"""A clock the test moves: latencies come out exact instead of as long as sleeps took.

The benchmark modules read ``time.perf_counter``; a test swaps their ``time`` for a
:class:`VirtualClock`, and each simulated request says how long it takes with
:meth:`VirtualClock.take`. What is tested is the arithmetic around the calls
(pairing, ordering, medians, bounds), which a busy machine cannot disturb.
"""

from __future__ import annotations

import asyncio
from types import ModuleType

import pytest


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now

    async def take(self, seconds: float) -> None:
        """A request that lasts ``seconds``: the clock moves on, and the loop turns once."""
        self.now += seconds
        await asyncio.sleep(0)


def install(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> VirtualClock:
    clock = VirtualClock()
    for module in modules:
        monkeypatch.setattr(module, "time", clock)
    return clock
