from collections.abc import Awaitable, Callable

import pytest

from clothing.benchmarks import paired
from clothing.benchmarks.paired import run_paired

from .clock import VirtualClock, install


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    return install(monkeypatch, paired)


async def test_pairs_alternate_order_and_difference_is_per_pair(clock: VirtualClock) -> None:
    calls: list[tuple[str, int]] = []

    def client(name: str, seconds: float) -> Callable[[int], Awaitable[None]]:
        async def send(index: int) -> None:
            calls.append((name, index))
            await clock.take(seconds)

        return send

    result = await run_paired(client("slow", 0.012), client("fast", 0.002), pairs=6, warmup=0)
    assert result.pairs == 6
    assert result.first.requests == result.second.requests == 6
    # Same index to both sides, and the order flips every pair.
    assert calls[:4] == [("slow", 0), ("fast", 0), ("fast", 1), ("slow", 1)]
    assert result.differences_ms == pytest.approx((10.0,) * 6)
    assert result.median_difference_ms == pytest.approx(10.0)
    assert result.first.p50_ms == pytest.approx(12.0)
    assert result.second.p50_ms == pytest.approx(2.0)
    assert result.first.elapsed_s == pytest.approx(6 * 0.012), "each side's own busy time"


async def test_a_failed_side_drops_the_pair_from_both(clock: VirtualClock) -> None:
    async def flaky(index: int) -> None:
        await clock.take(0.001)
        if index % 3 == 0:
            raise RuntimeError("boom")

    async def fine(index: int) -> None:
        await clock.take(0.001)

    result = await run_paired(flaky, fine, pairs=9, warmup=0)
    assert result.first.errors == 3
    assert result.first.first_error == "RuntimeError: boom"
    assert result.second.errors == 0
    assert result.pairs == result.first.requests == result.second.requests == 6


async def test_drift_cancels_in_the_paired_difference(clock: VirtualClock) -> None:
    # Both sides slow down together (load rising during the run): each p50 moves
    # by 14 ms over the run while the per-pair difference stays the real 5 ms gap.
    pair_count = 0

    async def gateway(index: int) -> None:
        await clock.take(0.002 + 0.0015 * index + 0.005)

    async def direct(index: int) -> None:
        nonlocal pair_count
        pair_count += 1
        await clock.take(0.002 + 0.0015 * index)

    result = await run_paired(gateway, direct, pairs=20, warmup=0)
    assert pair_count == 20
    assert result.median_difference_ms == pytest.approx(5.0)
    assert max(result.differences_ms) - min(result.differences_ms) == pytest.approx(0.0, abs=1e-6)
    spread = max(result.second.latencies_s) - min(result.second.latencies_s)
    assert spread * 1000 == pytest.approx(28.5)
    assert result.first.p50_ms - result.second.p50_ms == pytest.approx(5.0)


async def test_duration_bounds_the_run_and_bad_bounds_are_rejected(clock: VirtualClock) -> None:
    async def send(index: int) -> None:
        await clock.take(0.001)

    # 2 ms a pair in a 50 ms budget (the warm-up pair comes before the clock starts).
    result = await run_paired(send, send, duration_s=0.05, warmup=1)
    assert 24 <= result.pairs <= 26
    with pytest.raises(ValueError, match="bounded"):
        await run_paired(send, send)
    with pytest.raises(ValueError, match="at least 1"):
        await run_paired(send, send, pairs=0)
    with pytest.raises(ValueError, match="positive"):
        await run_paired(send, send, duration_s=0)
