"""A closed-loop async load generator: N workers, each sending one request at a time.

A run stops after a fixed number of requests or a duration, whichever comes first;
one of the two is always set, so a run is bounded. Latency is measured around each
awaited call with ``time.perf_counter``; failures are counted, not timed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

Send = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class LoadResult:
    """Latencies (seconds) of the successful requests of one run."""

    concurrency: int
    latencies_s: tuple[float, ...]
    errors: int
    elapsed_s: float
    first_error: str | None = None
    images_per_request: int = 1
    # Images/s of each block when this result pools interleaved blocks (in round order).
    block_images_per_s: tuple[float, ...] = ()

    @property
    def requests(self) -> int:
        return len(self.latencies_s)

    @property
    def throughput(self) -> float:
        """Successful requests per second of wall time."""
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def images_per_s(self) -> float:
        return self.throughput * self.images_per_request

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        return float(np.percentile(np.asarray(self.latencies_s), q) * 1000.0)

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    def summary(self) -> dict[str, float | int | str | list[float] | None]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 4),
            "throughput_rps": round(self.throughput, 3),
            "images_per_s": round(self.images_per_s, 3),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "first_error": self.first_error,
            "block_images_per_s": [round(rate, 3) for rate in self.block_images_per_s],
        }


@dataclass
class _Counters:
    next_index: int = 0
    errors: int = 0
    first_error: str | None = None
    latencies: list[float] = field(default_factory=list)


async def run_load(
    send: Send,
    *,
    concurrency: int,
    requests: int | None = None,
    duration_s: float | None = None,
    warmup: int = 0,
    on_request: Callable[[], None] | None = None,
    images_per_request: int = 1,
) -> LoadResult:
    """Drive ``send(index)`` from ``concurrency`` workers; return what was measured.

    ``warmup`` requests go first (same concurrency, not measured) so connection set-up,
    lazy imports and first-batch allocations stay out of the figures.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if requests is None and duration_s is None:
        raise ValueError("set requests or duration_s: a run must be bounded")
    if requests is not None and requests < 1:
        raise ValueError("requests must be at least 1")
    if duration_s is not None and duration_s <= 0:
        raise ValueError("duration_s must be positive")
    if warmup:
        await _drive(send, concurrency, warmup, None, _Counters(), on_request=None)
    counters = _Counters()
    started = time.perf_counter()
    await _drive(send, concurrency, requests, duration_s, counters, on_request=on_request)
    elapsed = time.perf_counter() - started
    return LoadResult(
        concurrency=concurrency,
        latencies_s=tuple(counters.latencies),
        errors=counters.errors,
        elapsed_s=elapsed,
        first_error=counters.first_error,
        images_per_request=images_per_request,
    )


async def _drive(
    send: Send,
    concurrency: int,
    requests: int | None,
    duration_s: float | None,
    counters: _Counters,
    *,
    on_request: Callable[[], None] | None,
) -> None:
    deadline = None if duration_s is None else time.perf_counter() + duration_s

    async def worker() -> None:
        while True:
            if requests is not None and counters.next_index >= requests:
                return
            if deadline is not None and time.perf_counter() >= deadline:
                return
            index = counters.next_index
            counters.next_index += 1
            began = time.perf_counter()
            try:
                await send(index)
            except Exception as error:  # every failure counts, whatever the client raised
                counters.errors += 1
                if counters.first_error is None:
                    counters.first_error = f"{type(error).__name__}: {error}"[:500]
            else:
                counters.latencies.append(time.perf_counter() - began)
            if on_request is not None:
                on_request()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
