import asyncio
from collections.abc import Awaitable, Callable

import pytest

from clothing.benchmarks.paired import run_paired


async def test_pairs_alternate_order_and_difference_is_per_pair() -> None:
    calls: list[tuple[str, int]] = []

    def client(name: str, delay: float) -> Callable[[int], Awaitable[None]]:
        async def send(index: int) -> None:
            calls.append((name, index))
            await asyncio.sleep(delay)

        return send

    result = await run_paired(client("slow", 0.012), client("fast", 0.002), pairs=6, warmup=0)
    assert result.pairs == 6
    assert result.first.requests == result.second.requests == 6
    # Same index to both sides, and the order flips every pair.
    assert calls[:4] == [("slow", 0), ("fast", 0), ("fast", 1), ("slow", 1)]
    assert 7.0 < result.median_difference_ms < 30.0
    assert result.first.p50_ms > result.second.p50_ms


async def test_a_failed_side_drops_the_pair_from_both() -> None:
    async def flaky(index: int) -> None:
        if index % 3 == 0:
            raise RuntimeError("boom")

    async def fine(index: int) -> None:
        await asyncio.sleep(0)

    result = await run_paired(flaky, fine, pairs=9, warmup=0)
    assert result.first.errors == 3
    assert result.first.first_error == "RuntimeError: boom"
    assert result.second.errors == 0
    assert result.pairs == result.first.requests == result.second.requests == 6


async def test_drift_cancels_in_the_paired_difference() -> None:
    # Both sides slow down together (load rising during the run); the per-pair
    # difference stays near the real 5 ms gap while each p50 moves far more.
    pair_count = 0

    async def gateway(index: int) -> None:
        await asyncio.sleep(0.002 + 0.0015 * index + 0.005)

    async def direct(index: int) -> None:
        nonlocal pair_count
        pair_count += 1
        await asyncio.sleep(0.002 + 0.0015 * index)

    result = await run_paired(gateway, direct, pairs=20, warmup=0)
    assert pair_count == 20
    assert 4.0 < result.median_difference_ms < 9.0
    assert result.first.p50_ms - result.second.p50_ms == pytest.approx(
        result.median_difference_ms, abs=4.0
    )


async def test_duration_bounds_the_run_and_bad_bounds_are_rejected() -> None:
    async def send(index: int) -> None:
        await asyncio.sleep(0.001)

    result = await run_paired(send, send, duration_s=0.05, warmup=1)
    assert 1 <= result.pairs < 60
    with pytest.raises(ValueError, match="bounded"):
        await run_paired(send, send)
    with pytest.raises(ValueError, match="at least 1"):
        await run_paired(send, send, pairs=0)
    with pytest.raises(ValueError, match="positive"):
        await run_paired(send, send, duration_s=0)
