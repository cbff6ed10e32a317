"""Paired measurement: two clients, one request each in turn, so machine drift cancels.

Measuring the gateway and the direct-gRPC path minutes apart lets a change in machine
load show up as "overhead". Here request ``i`` goes to both clients back to back, with
the same photo, and the order flips every pair so neither side always runs first
(warm caches, a just-finished batch). The overhead is the median of the per-pair
differences, which a slow drift moves far less than it moves either p50.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from clothing.benchmarks.loadgen import LoadResult

Send = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class PairedResult:
    """Latencies of both sides over the pairs where both succeeded."""

    first: LoadResult
    second: LoadResult
    differences_ms: tuple[float, ...]

    @property
    def pairs(self) -> int:
        return len(self.differences_ms)

    @property
    def median_difference_ms(self) -> float:
        """Median over pairs of (first − second) latency, in milliseconds."""
        return statistics.median(self.differences_ms) if self.differences_ms else float("nan")


async def _timed(send: Send, index: int) -> tuple[float, str | None]:
    """Seconds taken by ``send(index)`` and its error, if it failed."""
    began = time.perf_counter()
    try:
        await send(index)
    except Exception as error:  # every failure counts, whatever the client raised
        return time.perf_counter() - began, f"{type(error).__name__}: {error}"[:500]
    return time.perf_counter() - began, None


async def run_paired(
    first: Send,
    second: Send,
    *,
    pairs: int | None = None,
    duration_s: float | None = None,
    warmup: int = 2,
) -> PairedResult:
    """Send request ``i`` to ``first`` and ``second`` in turn, one at a time.

    Stops after ``pairs`` pairs or ``duration_s`` seconds, whichever comes first.
    A pair where either side failed counts as an error on that side and is left
    out of the latencies of both, so the two sides cover the same photos.
    """
    if pairs is None and duration_s is None:
        raise ValueError("set pairs or duration_s: a run must be bounded")
    if pairs is not None and pairs < 1:
        raise ValueError("pairs must be at least 1")
    if duration_s is not None and duration_s <= 0:
        raise ValueError("duration_s must be positive")
    for index in range(warmup):
        await _timed(first, index)
        await _timed(second, index)
    latencies: tuple[list[float], list[float]] = ([], [])
    errors = [0, 0]
    busy_s = [0.0, 0.0]
    first_errors: list[str | None] = [None, None]
    deadline = None if duration_s is None else time.perf_counter() + duration_s
    index = 0
    while (pairs is None or index < pairs) and (deadline is None or time.perf_counter() < deadline):
        # Flip the order every pair: whichever side goes first may find the machine
        # in a different state (a batch just finished, caches warm).
        order = (0, 1) if index % 2 == 0 else (1, 0)
        taken: list[float | None] = [None, None]
        for side in order:
            seconds, error = await _timed((first, second)[side], index)
            busy_s[side] += seconds
            if error is None:
                taken[side] = seconds
            else:
                errors[side] += 1
                first_errors[side] = first_errors[side] or error
        if taken[0] is not None and taken[1] is not None:
            latencies[0].append(taken[0])
            latencies[1].append(taken[1])
        index += 1
    sides = [
        LoadResult(
            concurrency=1,
            latencies_s=tuple(latencies[side]),
            errors=errors[side],
            # Each side's own time: its throughput is what one client alone would see.
            elapsed_s=busy_s[side],
            first_error=first_errors[side],
        )
        for side in (0, 1)
    ]
    differences = tuple((a - b) * 1000.0 for a, b in zip(latencies[0], latencies[1], strict=True))
    return PairedResult(first=sides[0], second=sides[1], differences_ms=differences)
