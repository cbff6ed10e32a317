"""Dynamic batching that wraps a predict function from outside.

Concurrent requests with the same signature, input names, dtypes and row
shapes are merged along the first axis into one runtime call. A group goes to
a worker when it reaches ``max_batch_size`` rows, when ``batch_timeout_micros``
have passed since its first request (measured with ``time.monotonic()``), or
at once when no batch is running: a lone request never waits for the timeout.
A request is never split; one larger than ``max_batch_size`` runs alone.
With ``allowed_batch_sizes`` a batch is padded with copies of its first row up
to the next allowed size. Results are split back in order after checking every
output has one row per input row (padding included); a failed batch fails
every request in it, and :meth:`Batcher.stop` fails the queued requests and a
batch still running. The queue is bounded:
past ``max_enqueued_batches * max_batch_size`` waiting rows a request is
refused with :class:`ResourceExhausted` instead of growing the queue.

A batch that runs while no other batch runs and nothing waits may go to
``predict_alone`` instead: on CPU that is a session with a thread per core, so
a lone request at low load is as fast as without batching, while parallel
batches under load each keep their share of the cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from clothing import request_context, tracing
from clothing.model_server.config import BatchingConfig
from clothing.model_server.errors import Internal, InvalidArgument, ResourceExhausted

PredictFn = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
UNLOADED = "model version unloaded"


@dataclass
class _Request:
    inputs: Mapping[str, np.ndarray]
    rows: int
    enqueued: float
    future: asyncio.Future[dict[str, np.ndarray]] = field(repr=False)
    # For the request's access line: seconds queued, and its batch's rows and run time.
    waited: float = 0.0
    batch_rows: int = 0
    ran: float = 0.0


def _fail(requests: list[_Request], error: BaseException) -> None:
    for request in requests:
        if not request.future.done():
            request.future.set_exception(error)


def batch_key(inputs: Mapping[str, np.ndarray]) -> Hashable:
    """Requests merge only when names, dtypes and shapes past the batch axis agree."""
    return tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in inputs.items()))


def _merge(parts: list[Mapping[str, np.ndarray]]) -> Mapping[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _pad(inputs: Mapping[str, np.ndarray], extra: int) -> dict[str, np.ndarray]:
    """``extra`` more rows, copies of the first (as TF Serving pads); their answers are dropped."""
    return {
        name: np.concatenate([array, np.repeat(array[:1], extra, axis=0)])
        for name, array in inputs.items()
    }


def _trace_batch(request: _Request) -> None:
    """The request's wait and its batch's run as spans, ending now (when tracing)."""
    if tracing.enabled():
        ran_until = time.time_ns()
        run_from = ran_until - int(request.ran * 1e9)
        tracing.record_span("batch wait", run_from - int(request.waited * 1e9), run_from)
        tracing.record_span("run", run_from, ran_until)


def rows_of(inputs: Mapping[str, np.ndarray]) -> int:
    counts = {array.shape[0] if array.ndim else -1 for array in inputs.values()}
    if len(counts) != 1 or -1 in counts:
        raise InvalidArgument(
            "batched inputs must all have the same first (batch) dimension; got "
            + ", ".join(f"{name}{list(array.shape)}" for name, array in inputs.items())
        )
    return counts.pop()


class Batcher:
    """Queue and workers for one model version's predict function."""

    def __init__(
        self,
        predict: PredictFn,
        config: BatchingConfig,
        executor: Executor,
        *,
        on_batch: Callable[[int], None] = lambda rows: None,
        on_queue_depth: Callable[[int], None] = lambda change: None,
        on_queue_wait: Callable[[float], None] = lambda seconds: None,
        on_runtime: Callable[[float], None] = lambda seconds: None,
        predict_alone: PredictFn | None = None,
    ) -> None:
        self._predict = predict
        self._predict_alone = predict_alone or predict
        self._config = config
        self._executor = executor
        self._on_batch = on_batch
        self._on_queue_depth = on_queue_depth
        self._on_queue_wait = on_queue_wait
        self._on_runtime = on_runtime
        self._groups: dict[Hashable, list[_Request]] = {}
        self._queued_rows = 0
        self._running = 0
        self._wakeup = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def start(self) -> None:
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._work(), name=f"batch-worker-{index}")
                for index in range(self._config.num_batch_threads)
            ]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        for group in self._groups.values():
            _fail(group, Internal(UNLOADED))
        self._groups.clear()
        self._set_queued(0)

    async def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = rows_of(inputs)
        if self._queued_rows + rows > self._config.max_queued_rows:
            raise ResourceExhausted(
                f"batching queue full ({self._queued_rows} rows waiting, "
                f"limit {self._config.max_queued_rows}); retry later"
            )
        self.start()
        future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        request = _Request(inputs, rows, time.monotonic(), future)
        self._groups.setdefault(batch_key(inputs), []).append(request)
        self._set_queued(self._queued_rows + rows)
        self._wakeup.set()
        outputs = await future
        _trace_batch(request)
        request_context.note(
            queue_ms=round(request.waited * 1000.0, 3),
            run_ms=round(request.ran * 1000.0, 3),
            batch_rows=request.batch_rows,
        )
        return outputs

    def _set_queued(self, rows: int) -> None:
        # Several versions share a model's gauge, so it is told the change only.
        self._on_queue_depth(rows - self._queued_rows)
        self._queued_rows = rows

    def _take_ready(self) -> tuple[list[_Request] | None, float | None]:
        """The next batch to run, or how long to wait before one may be ready."""
        if not self._groups:
            return None, None
        key, group = min(self._groups.items(), key=lambda item: item[1][0].enqueued)
        now = time.monotonic()
        deadline = group[0].enqueued + self._config.batch_timeout_micros / 1e6
        full = sum(r.rows for r in group) >= self._config.max_batch_size
        if not (full or now >= deadline or self._running == 0):
            return None, deadline - now
        batch: list[_Request] = []
        total = 0
        while group and (not batch or total + group[0].rows <= self._config.max_batch_size):
            request = group.pop(0)
            batch.append(request)
            total += request.rows
        if not group:
            del self._groups[key]
        self._set_queued(self._queued_rows - total)
        return batch, None

    async def _work(self) -> None:
        while True:
            batch, wait = self._take_ready()
            if batch is None:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), wait)
                continue
            self._running += 1
            try:
                await self._run(batch)
            finally:
                self._running -= 1
                # A finished batch may make waiting requests ready at once.
                self._wakeup.set()

    async def _run(self, batch: list[_Request]) -> None:
        live = [request for request in batch if not request.future.cancelled()]
        if not live:
            return
        total = sum(request.rows for request in live)
        dequeued = time.monotonic()
        for request in live:
            request.waited = dequeued - request.enqueued
            request.batch_rows = total
            self._on_queue_wait(request.waited)
        try:
            merged = _merge([request.inputs for request in live])
            padded = self._config.padded_size(total)
            if padded > total:
                merged = _pad(merged, padded - total)
            self._on_batch(total)
            # This batch is counted in _running, so 1 means nothing else runs.
            alone = self._running == 1 and self._queued_rows == 0
            predict = self._predict_alone if alone else self._predict
            loop = asyncio.get_running_loop()
            started = time.monotonic()
            try:
                outputs = await loop.run_in_executor(self._executor, predict, merged)
            finally:
                ran = time.monotonic() - started
                self._on_runtime(ran)
                for request in live:
                    request.ran = ran
            for name, array in outputs.items():
                if array.ndim == 0 or array.shape[0] != padded:
                    raise Internal(
                        f"output {name} has shape {list(array.shape)}, expected {padded} rows"
                    )
        except asyncio.CancelledError:
            # stop() cancelled this worker mid-batch: its callers must not wait for ever.
            _fail(live, Internal(UNLOADED))
            raise
        except Exception as error:
            _fail(live, error)
            return
        start = 0
        for request in live:
            end = start + request.rows
            if not request.future.done():
                request.future.set_result({name: out[start:end] for name, out in outputs.items()})
            start = end
