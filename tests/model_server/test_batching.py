"""Dynamic batching around a real predict function, and end to end on the server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from clothing.model_server.batching import Batcher
from clothing.model_server.config import BatchingConfig, ModelConfig
from clothing.model_server.errors import Internal, InvalidArgument, ResourceExhausted
from tests.fixtures import build_test_model, reference_probabilities
from tests.model_server.conftest import MODEL, ServerFactory
from tests.model_server.test_grpc import images, request_for


class Recorder:
    """Doubles its input; records batch shapes; can be held, slowed down or made to fail.

    A held recorder blocks every call until ``release`` is set, so a test decides
    when a running batch ends instead of guessing how long it takes.
    """

    def __init__(self, delay: float = 0.0, *, held: bool = False) -> None:
        self.delay = delay
        self.shapes: list[tuple[int, ...]] = []
        self.fail = False
        self.lock = threading.Lock()
        self.started = threading.Event()
        self.release = threading.Event()
        if not held:
            self.release.set()

    @property
    def batches(self) -> list[int]:
        return [shape[0] for shape in self.shapes]

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.lock:
            self.shapes.append(inputs["x"].shape)
        self.started.set()
        assert self.release.wait(30), "the test never released the batch"
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("runtime exploded")
        return {"y": inputs["x"] * 2}

    async def wait_started(self) -> None:
        assert await asyncio.to_thread(self.started.wait, 30), "no batch started"


async def until(condition: Callable[[], bool], limit: float = 30.0) -> None:
    """Let the event loop run until ``condition()`` holds (the event, not a guess of time)."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - the queue has no event to await; poll it
            await asyncio.sleep(0.001)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(4)
    yield pool
    pool.shutdown()


def rows(start: int, count: int, width: int = 3) -> dict[str, np.ndarray]:
    values = np.arange(start, start + count * width, dtype=np.float32).reshape(count, width)
    return {"x": values}


async def test_concurrent_requests_merge_and_split_back_in_order(
    executor: ThreadPoolExecutor,
) -> None:
    predict = Recorder(delay=0.05)
    batcher = Batcher(predict, BatchingConfig(8, 20_000, 10, 1), executor)
    requests = [rows(i * 100, 1 + i % 3) for i in range(12)]
    results = await asyncio.gather(*(batcher.predict(r) for r in requests))
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], request["x"] * 2)
    assert max(predict.batches) > 1
    assert all(size <= 8 for size in predict.batches)
    assert sum(predict.batches) == sum(len(r["x"]) for r in requests)
    await batcher.stop()


async def test_queue_waits_and_runtime_are_timed_apart(executor: ThreadPoolExecutor) -> None:
    waits: list[float] = []
    runtimes: list[float] = []
    predict = Recorder(held=True)
    batcher = Batcher(
        predict,
        BatchingConfig(1, 0, 10, 1),
        executor,
        on_queue_wait=waits.append,
        on_runtime=runtimes.append,
    )
    # One row per batch and one batch thread: the second request waits out the first.
    first = asyncio.ensure_future(batcher.predict(rows(0, 1)))
    await predict.wait_started()
    second = asyncio.ensure_future(batcher.predict(rows(1, 1)))
    await until(lambda: batcher.queued_rows == 1)
    held_from = time.monotonic()
    await asyncio.sleep(0.2)  # how long the first batch runs: the second waits at least that
    predict.release.set()
    held = time.monotonic() - held_from
    await asyncio.gather(first, second)
    assert len(runtimes) == 2
    assert runtimes[0] >= held, "the first batch's runtime covers the time it was held"
    assert len(waits) == 2
    assert waits[1] >= held, "the second request's queue wait covers the first batch"
    assert waits[0] < waits[1]
    await batcher.stop()


async def test_a_lone_request_does_not_wait_for_the_timeout(executor: ThreadPoolExecutor) -> None:
    # Time is the behaviour here; a 60 s timeout leaves a wide margin on a busy machine.
    batcher = Batcher(Recorder(), BatchingConfig(32, 60_000_000, 10, 2), executor)
    started = time.monotonic()
    for _ in range(3):
        await batcher.predict(rows(0, 1))
    assert time.monotonic() - started < 30.0
    await batcher.stop()


async def test_only_a_batch_with_the_machine_to_itself_runs_alone(
    executor: ThreadPoolExecutor,
) -> None:
    shared, alone = Recorder(delay=0.05), Recorder(delay=0.05)
    one_worker = BatchingConfig(2, 1000, 10, 1)
    batcher = Batcher(shared, one_worker, executor, predict_alone=alone)
    await batcher.predict(rows(0, 1))
    assert (alone.batches, shared.batches) == ([1], [])
    # Six rows in batches of two: the first two leave rows waiting, the last does not.
    requests = [rows(i * 10, 1) for i in range(6)]
    results = await asyncio.gather(*(batcher.predict(r) for r in requests))
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], request["x"] * 2)
    assert (alone.batches, shared.batches) == ([1, 2], [2, 2])
    await batcher.stop()


async def test_a_batch_that_overlaps_a_running_one_shares_the_cores(
    executor: ThreadPoolExecutor,
) -> None:
    shared, alone = Recorder(), Recorder(held=True)
    two_workers = BatchingConfig(4, 1000, 10, 2)
    batcher = Batcher(shared, two_workers, executor, predict_alone=alone)
    first = asyncio.ensure_future(batcher.predict(rows(0, 1)))
    await alone.wait_started()  # the first runs, alone, and is held running
    await batcher.predict(rows(10, 2))
    assert not first.done()
    alone.release.set()
    await first
    assert (alone.batches, shared.batches) == ([1], [2])
    await batcher.stop()


async def test_full_batch_goes_before_the_timeout(executor: ThreadPoolExecutor) -> None:
    predict = Recorder(held=True)
    batcher = Batcher(predict, BatchingConfig(4, 60_000_000, 10, 1), executor)
    first = asyncio.create_task(batcher.predict(rows(0, 1)))
    await predict.wait_started()  # the first runs alone; the next four queue behind it
    rest = [asyncio.ensure_future(batcher.predict(rows(i, 1))) for i in range(4)]
    await until(lambda: batcher.queued_rows == 4)
    started = time.monotonic()
    predict.release.set()
    await asyncio.gather(*rest, first)
    assert time.monotonic() - started < 30.0, "the full batch did not wait out the 60 s timeout"
    assert predict.batches == [1, 4]
    await batcher.stop()


async def test_requests_of_different_shapes_never_mix(executor: ThreadPoolExecutor) -> None:
    predict = Recorder(held=True)
    batcher = Batcher(predict, BatchingConfig(16, 20_000, 10, 1), executor)
    narrow = [rows(i, 1, width=3) for i in range(4)]
    wide = [rows(i, 1, width=5) for i in range(4)]
    # Interleaved, all queued while a first batch is held running.
    first = asyncio.ensure_future(batcher.predict(rows(0, 1, width=4)))
    await predict.wait_started()
    mixed = [request for pair in zip(narrow, wide, strict=True) for request in pair]
    pending = [asyncio.ensure_future(batcher.predict(r)) for r in mixed]
    await until(lambda: batcher.queued_rows == 8)
    predict.release.set()
    results = await asyncio.gather(first, *pending)
    for request, result in zip(mixed, results[1:], strict=True):
        np.testing.assert_array_equal(result["y"], request["x"] * 2)
    # One batch per shape, each whole: the shapes were grouped, never mixed.
    assert sorted(predict.shapes) == [(1, 4), (4, 3), (4, 5)]
    await batcher.stop()


async def test_oversized_request_runs_whole(executor: ThreadPoolExecutor) -> None:
    predict = Recorder()
    batcher = Batcher(predict, BatchingConfig(4, 1000, 10, 1), executor)
    result = await batcher.predict(rows(0, 9))
    assert result["y"].shape == (9, 3)
    assert predict.batches == [9]
    await batcher.stop()


async def test_a_batch_is_padded_up_to_an_allowed_size(executor: ThreadPoolExecutor) -> None:
    seen: list[np.ndarray] = []

    def predict(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(inputs["x"].copy())
        return {"y": inputs["x"] * 2}

    config = BatchingConfig(8, 1000, 10, 1, allowed_batch_sizes=(2, 4, 8))
    batcher = Batcher(predict, config, executor)
    three = rows(0, 3)
    result = await batcher.predict(three)
    np.testing.assert_array_equal(result["y"], three["x"] * 2)  # padding rows dropped
    (padded,) = seen
    np.testing.assert_array_equal(padded, np.concatenate([three["x"], three["x"][:1]]))
    oversized = await batcher.predict(rows(0, 9))  # past every allowed size: as it is
    assert oversized["y"].shape == (9, 3)
    assert [len(batch) for batch in seen] == [4, 9]
    await batcher.stop()


async def test_a_failing_batch_fails_every_waiter(executor: ThreadPoolExecutor) -> None:
    predict = Recorder(delay=0.05)
    predict.fail = True
    batcher = Batcher(predict, BatchingConfig(8, 20_000, 10, 1), executor)
    outcomes = await asyncio.gather(
        *(batcher.predict(rows(i, 1)) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    predict.fail = False
    assert (await batcher.predict(rows(0, 1)))["y"].shape == (1, 3)
    await batcher.stop()


async def test_wrong_output_length_is_an_error(executor: ThreadPoolExecutor) -> None:
    def truncating(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"][:1]}

    batcher = Batcher(truncating, BatchingConfig(8, 1000, 10, 1), executor)
    with pytest.raises(Exception, match="expected 2 rows"):
        await batcher.predict(rows(0, 2))
    await batcher.stop()


async def test_full_queue_is_refused_not_grown(executor: ThreadPoolExecutor) -> None:
    predict = Recorder(held=True)
    depth: list[int] = []
    batcher = Batcher(predict, BatchingConfig(2, 1000, 2, 1), executor, on_queue_depth=depth.append)
    running = asyncio.create_task(batcher.predict(rows(0, 1)))
    await predict.wait_started()
    queued = [asyncio.create_task(batcher.predict(rows(i, 1))) for i in range(4)]
    await until(lambda: batcher.queued_rows == 4)
    with pytest.raises(ResourceExhausted, match="queue full"):
        await batcher.predict(rows(9, 1))
    predict.release.set()
    await asyncio.gather(running, *queued)
    assert batcher.queued_rows == 0
    assert sum(depth) == 0
    await batcher.stop()


async def test_server_batches_under_concurrent_load(serve: ServerFactory, tmp_path: Path) -> None:
    base = tmp_path / "slow"
    build_test_model(base / "1", slow_ops=1)
    batching = BatchingConfig(16, 5_000, 20, 1)
    async with serve((ModelConfig(MODEL, base),), batching=batching) as running:
        batch = images(1)
        expected = reference_probabilities(batch)
        responses = await asyncio.gather(
            *(running.predictions.Predict(request_for(batch)) for _ in range(24))
        )
        for response in responses:
            got = np.asarray(response.outputs["probabilities"].float_val).reshape(1, 10)
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        async with httpx.AsyncClient(base_url=running.rest_url) as client:
            text = (await client.get("/metrics")).text
        count = _metric(text, 'model_server_batch_size_count{model="clothing-model"}')
        total = _metric(text, 'model_server_batch_size_sum{model="clothing-model"}')
        assert total == 24
        assert count < 24, "some batches held more than one request"
        # One runtime observation per batch, one queue wait per request.
        runtime = 'model_server_runtime_latency_seconds_count{model="clothing-model",version="1"}'
        assert _metric(text, runtime) == count
        queuing = 'model_server_queuing_latency_seconds_count{model="clothing-model"}'
        assert _metric(text, queuing) == 24


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in metrics")


async def test_stop_fails_the_queued_requests_and_the_running_batch(
    executor: ThreadPoolExecutor,
) -> None:
    predict = Recorder(held=True)
    batcher = Batcher(predict, BatchingConfig(8, 60_000_000, 10, 1), executor)
    running = asyncio.ensure_future(batcher.predict(rows(0, 1)))
    await predict.wait_started()
    queued = [asyncio.ensure_future(batcher.predict(rows(i, 1))) for i in range(3)]
    await until(lambda: batcher.queued_rows == 3)
    await batcher.stop()
    predict.release.set()
    async with asyncio.timeout(30):
        outcomes = await asyncio.gather(running, *queued, return_exceptions=True)
    for outcome in outcomes:
        assert isinstance(outcome, Internal), outcome
        assert "model version unloaded" in str(outcome)
    assert batcher.queued_rows == 0
    assert predict.batches == [1], "nothing queued ran after stop()"


async def test_cancelled_requests_are_left_out_of_their_batch(
    executor: ThreadPoolExecutor,
) -> None:
    predict = Recorder(held=True)
    batcher = Batcher(predict, BatchingConfig(8, 1000, 10, 1), executor)
    first = asyncio.ensure_future(batcher.predict(rows(0, 1)))
    await predict.wait_started()
    kept = asyncio.ensure_future(batcher.predict(rows(10, 1)))
    dropped = asyncio.ensure_future(batcher.predict(rows(20, 2)))
    last = asyncio.ensure_future(batcher.predict(rows(30, 1)))
    await until(lambda: batcher.queued_rows == 4)
    dropped.cancel()
    predict.release.set()
    results = await asyncio.gather(first, kept, last)
    np.testing.assert_array_equal(results[1]["y"], rows(10, 1)["x"] * 2)
    np.testing.assert_array_equal(results[2]["y"], rows(30, 1)["x"] * 2)
    assert predict.batches == [1, 2], "the cancelled request's two rows never ran"
    assert dropped.cancelled()


async def test_a_batch_of_only_cancelled_requests_never_runs(
    executor: ThreadPoolExecutor,
) -> None:
    predict = Recorder(held=True)
    batcher = Batcher(predict, BatchingConfig(8, 1000, 10, 1), executor)
    first = asyncio.ensure_future(batcher.predict(rows(0, 1)))
    await predict.wait_started()
    gone = asyncio.ensure_future(batcher.predict(rows(10, 3)))
    await until(lambda: batcher.queued_rows == 3)
    gone.cancel()
    predict.release.set()
    await first
    await until(lambda: batcher.queued_rows == 0)
    after = await batcher.predict(rows(40, 1))  # the worker went on to the next request
    np.testing.assert_array_equal(after["y"], rows(40, 1)["x"] * 2)
    assert predict.batches == [1, 1]
    await batcher.stop()


@pytest.mark.parametrize(
    "inputs",
    [
        {"x": np.zeros((2, 3), np.float32), "z": np.zeros((3, 3), np.float32)},
        {"x": np.zeros((2, 3), np.float32), "z": np.float32(1.0) * np.ones(())},
    ],
    ids=["two-and-three-rows", "a-scalar"],
)
async def test_inputs_with_different_batch_dimensions_are_refused(
    executor: ThreadPoolExecutor, inputs: dict[str, np.ndarray]
) -> None:
    predict = Recorder()
    batcher = Batcher(predict, BatchingConfig(8, 1000, 10, 1), executor)
    with pytest.raises(InvalidArgument, match="same first \\(batch\\) dimension") as refused:
        await batcher.predict(inputs)
    assert "x[2, 3]" in str(refused.value)
    assert predict.batches == []
    assert batcher.queued_rows == 0
    await batcher.stop()
