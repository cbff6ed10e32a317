import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import pytest

from clothing.benchmarks.interleave import (
    RESUME_SETTLE_S,
    Contender,
    merge_blocks,
    run_interleaved,
)
from clothing.benchmarks.loadgen import LoadResult


class Recorder:
    """Stands in for a running service: records pauses, and whether it was paused."""

    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events
        self.paused = False

    def pause(self) -> None:
        self.paused = True
        self.events.append(f"pause {self.name}")

    def resume(self) -> None:
        self.paused = False
        self.events.append(f"resume {self.name}")


async def test_blocks_alternate_and_only_the_measured_system_runs() -> None:
    events: list[str] = []
    services = {name: Recorder(name, events) for name in ("a", "b", "c")}
    served: list[str] = []

    def sender(name: str) -> Callable[[int], Awaitable[None]]:
        async def send(index: int) -> None:
            assert not services[name].paused, f"{name} was sent a request while paused"
            assert all(s.paused for other, s in services.items() if other != name)
            served.append(name)
            await asyncio.sleep(0.001)

        return send

    results = await run_interleaved(
        [Contender(name, sender(name), (services[name],)) for name in services],
        concurrency=2,
        rounds=3,
        requests=12,
        duration_s=None,
        warmup=2,
    )
    assert {name: result.requests for name, result in results.items()} == {
        "a": 12,
        "b": 12,
        "c": 12,
    }
    # Block order rotates each round: a b c, b c a, c a b.
    resumed = [event.split()[1] for event in events if event.startswith("resume")]
    assert resumed[:9] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    # Warm-up (2 requests) only before each system's first block.
    assert len(served) == 3 * (12 + 2)
    assert not any(s.paused for s in services.values())


async def test_a_failing_block_still_resumes_everything() -> None:
    events: list[str] = []
    service = Recorder("x", events)

    async def send(index: int) -> None:
        raise RuntimeError("down")

    results = await run_interleaved(
        [Contender("x", send, (service,))],
        concurrency=1,
        rounds=2,
        requests=4,
        duration_s=None,
        warmup=0,
    )
    assert results["x"].errors == 4
    assert results["x"].first_error == "RuntimeError: down"
    assert not service.paused


def test_merge_pools_latencies_and_sums_time() -> None:
    one = LoadResult(4, (0.1, 0.2), 0, 1.0)
    two = LoadResult(4, (0.3,), 1, 0.5, first_error="E")
    merged = merge_blocks([one, two])
    assert merged.latencies_s == (0.1, 0.2, 0.3)
    assert merged.errors == 1
    assert merged.first_error == "E"
    assert merged.throughput == pytest.approx(3 / 1.5)
    assert merged.block_images_per_s == (2.0, 2.0)  # each block's own rate, in order
    with pytest.raises(ValueError, match="no blocks"):
        merge_blocks([])


async def test_bad_rounds_are_rejected() -> None:
    with pytest.raises(ValueError, match="rounds"):
        await run_interleaved([], concurrency=1, rounds=0, requests=1, duration_s=None, warmup=0)


async def test_a_block_starts_only_after_its_system_settles() -> None:
    timeline: list[tuple[str, float]] = []

    class Timed(Recorder):
        def resume(self) -> None:
            super().resume()
            timeline.append(("resume", time.perf_counter()))

    async def send(index: int) -> None:
        timeline.append(("send", time.perf_counter()))

    await run_interleaved(
        [Contender("a", send, (Timed("a", []),))],
        concurrency=1,
        rounds=3,
        requests=3,
        duration_s=None,
        warmup=0,
    )
    gaps = [
        later - earlier
        for (first, earlier), (then, later) in itertools.pairwise(timeline)
        if (first, then) == ("resume", "send")
    ]
    assert len(gaps) == 3  # one block per round, one request each
    assert min(gaps) >= RESUME_SETTLE_S


async def test_an_in_process_system_runs_its_own_blocks_between_the_others() -> None:
    events: list[str] = []
    server = Recorder("server", events)
    asked: list[tuple[int | None, float | None]] = []

    async def send(index: int) -> None:
        events.append("request")

    async def block(requests: int | None, seconds: float | None) -> LoadResult:
        assert server.paused, "the in-process block ran while the server was running"
        asked.append((requests, seconds))
        events.append("block")
        return LoadResult(concurrency=8, latencies_s=(0.1,), errors=0, elapsed_s=0.1)

    results = await run_interleaved(
        [Contender("server", send, (server,)), Contender("inside", None, (), block)],
        concurrency=4,
        rounds=2,
        requests=6,
        duration_s=None,
        warmup=0,
    )
    assert asked == [(3, None), (3, None)]
    assert events.count("block") == 2
    # Filed under the cell's concurrency, not the batch the block ran with.
    assert results["inside"].concurrency == 4
    assert results["inside"].block_images_per_s == (10.0, 10.0)
