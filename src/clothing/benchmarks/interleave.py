"""Several systems measured in alternating short blocks, so machine drift hits all alike.

On a small shared machine throughput moves a lot between identical runs when anything
else runs. Measuring system A for two minutes and system B for the next two lets that
drift land on one side only. Here each cell is split into ``rounds`` blocks per
system, run A, B, C, then B, C, A, and so on; each system's blocks are merged into one
result. Every system not being measured is paused (SIGSTOP to its process group), so
a server that polls while idle takes no CPU from the one being measured.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from clothing.benchmarks.loadgen import LoadResult, run_load

Send = Callable[[int], Awaitable[None]]
# An in-process system runs a whole block itself: (requests, seconds) -> its result.
Block = Callable[[int | None, float | None], Awaitable[LoadResult]]

# A resumed server first runs the timers that fell due while it was stopped: uvicorn
# closes keep-alive connections idle for over 5 s, and a pause of two other systems'
# blocks is longer. Requests sent in that instant can meet a connection being closed
# (a ReadError at c=64, once in a full run). After this wait the closed connections
# are seen as closed by the client's pool and replaced before the block starts.
RESUME_SETTLE_S = 0.1


class Pausable(Protocol):
    """Anything with ``pause()`` and ``resume()``, such as a running service."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...


@dataclass(frozen=True)
class Contender:
    """One system in an interleaved cell: how to send a request (or run a whole block),
    what to pause."""

    name: str
    send: Send | None
    services: Sequence[Pausable]
    block: Block | None = None


def merge_blocks(blocks: Sequence[LoadResult]) -> LoadResult:
    """One result from a system's blocks: latencies pooled, errors and time summed."""
    if not blocks:
        raise ValueError("no blocks to merge")
    return LoadResult(
        concurrency=blocks[0].concurrency,
        latencies_s=tuple(value for block in blocks for value in block.latencies_s),
        errors=sum(block.errors for block in blocks),
        elapsed_s=sum(block.elapsed_s for block in blocks),
        first_error=next((b.first_error for b in blocks if b.first_error), None),
        images_per_request=blocks[0].images_per_request,
        block_images_per_s=tuple(block.images_per_s for block in blocks),
    )


def round_ratio_range(ours: Sequence[float], theirs: Sequence[float]) -> list[float] | None:
    """Lowest and highest ratio of blocks measured in the same round, or None.

    The blocks of one round run within seconds of each other, so each round's ratio
    is a paired figure; their spread shows how far a run's pooled ratio can be trusted.
    """
    if len(ours) < 2 or len(ours) != len(theirs) or not all(theirs):
        return None
    ratios = [mine / other for mine, other in zip(ours, theirs, strict=True)]
    return [round(min(ratios), 3), round(max(ratios), 3)]


def _pause(contender: Contender) -> None:
    for service in contender.services:
        service.pause()


def _resume(contender: Contender) -> None:
    for service in contender.services:
        service.resume()


async def _run_block(
    contender: Contender,
    *,
    concurrency: int,
    requests: int | None,
    duration_s: float | None,
    warmup: int,
) -> LoadResult:
    if contender.block is not None:
        # Filed under the cell's concurrency, whatever the system ran with.
        return replace(await contender.block(requests, duration_s), concurrency=concurrency)
    if contender.send is None:
        raise ValueError(f"{contender.name}: neither a send nor a block")
    return await run_load(
        contender.send,
        concurrency=concurrency,
        requests=requests,
        duration_s=duration_s,
        warmup=warmup,
    )


async def run_interleaved(
    contenders: Sequence[Contender],
    *,
    concurrency: int,
    rounds: int,
    requests: int | None,
    duration_s: float | None,
    warmup: int,
    on_done: Callable[[str], object] | None = None,
) -> dict[str, LoadResult]:
    """Measure every contender in ``rounds`` alternating blocks; results by name.

    ``requests`` and ``duration_s`` are per system over all rounds, split evenly
    across the blocks. Warm-up requests go before each system's first block only.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    if not contenders:
        raise ValueError("nothing to measure")
    block_requests = None if requests is None else max(1, math.ceil(requests / rounds))
    block_seconds = None if duration_s is None else duration_s / rounds
    blocks: dict[str, list[LoadResult]] = {c.name: [] for c in contenders}
    for contender in contenders:
        _pause(contender)
    try:
        for round_index in range(rounds):
            # Rotate the order so no system always follows the same one.
            shift = round_index % len(contenders)
            for contender in (*contenders[shift:], *contenders[:shift]):
                _resume(contender)
                try:
                    await asyncio.sleep(RESUME_SETTLE_S)
                    blocks[contender.name].append(
                        await _run_block(
                            contender,
                            concurrency=concurrency,
                            requests=block_requests,
                            duration_s=block_seconds,
                            warmup=warmup if round_index == 0 else 0,
                        )
                    )
                finally:
                    _pause(contender)
    finally:
        for contender in contenders:
            _resume(contender)
    merged = {name: merge_blocks(found) for name, found in blocks.items()}
    if on_done is not None:
        for name in merged:
            on_done(name)
    return merged
