import asyncio

import pytest

from clothing.benchmarks import loadgen
from clothing.benchmarks.loadgen import LoadResult, run_load

from .clock import install


async def test_fixed_count_runs_exactly_that_many_with_bounded_concurrency():
    in_flight = 0
    peak = 0
    seen: list[int] = []

    async def send(index: int) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        seen.append(index)
        await asyncio.sleep(0.002)
        in_flight -= 1

    result = await run_load(send, concurrency=4, requests=40, warmup=4)
    assert result.requests == 40
    assert result.errors == 0
    assert peak == 4
    # Warm-up indices restart at 0; the measured run covers 0..39 once each.
    assert sorted(seen[4:]) == list(range(40))
    assert result.throughput == pytest.approx(40 / result.elapsed_s)


async def test_duration_bounds_the_run(monkeypatch):
    clock = install(monkeypatch, loadgen)

    async def send(index: int) -> None:
        await clock.take(0.01)

    # Requests take 10 ms of the clock one after another: 200 ms hold about 20.
    result = await run_load(send, concurrency=2, duration_s=0.2)
    assert 19 <= result.requests <= 22
    assert result.elapsed_s == pytest.approx(0.2, abs=0.025)


async def test_failures_are_counted_not_timed():
    async def send(index: int) -> None:
        if index % 2:
            raise RuntimeError(f"boom {index}")

    result = await run_load(send, concurrency=1, requests=10)
    assert result.requests == 5
    assert result.errors == 5
    assert result.first_error == "RuntimeError: boom 1"


async def test_unbounded_or_invalid_runs_are_refused():
    async def send(index: int) -> None:
        return None

    with pytest.raises(ValueError, match="bounded"):
        await run_load(send, concurrency=1)
    with pytest.raises(ValueError, match="concurrency"):
        await run_load(send, concurrency=0, requests=1)
    with pytest.raises(ValueError, match="requests"):
        await run_load(send, concurrency=1, requests=0)


def test_percentiles_and_summary():
    result = LoadResult(
        concurrency=2,
        latencies_s=tuple(i / 1000 for i in range(1, 101)),
        errors=1,
        elapsed_s=2.0,
        images_per_request=3,
    )
    assert result.p50_ms == pytest.approx(50.5)
    assert result.p99_ms == pytest.approx(99.01)
    assert result.images_per_s == pytest.approx(150.0)
    summary = result.summary()
    assert summary["requests"] == 100
    assert summary["errors"] == 1


def test_empty_result_has_nan_percentiles():
    result = LoadResult(concurrency=1, latencies_s=(), errors=3, elapsed_s=1.0)
    assert result.throughput == 0.0
    assert result.p50_ms != result.p50_ms  # NaN
