"""Image decoding in worker processes, each call with a deadline that really stops it.

A decoder thread cannot be interrupted: a file that makes libjpeg or libpng work
for minutes would hold its thread (and, in a pod with one worker, every other
photo) until it is done. Here each decode runs in a worker process that is
killed when its deadline passes; the caller gets :class:`DecodeTooSlow` (413) at
once and a fresh worker takes the dead one's place.

The workers are started once (``forkserver``, with the imaging code imported
before the fork, so a new one costs milliseconds) and reused. A call sends the
encoded bytes and gets the final model-input row back, never full-size pixels,
so crossing the process boundary costs copying a few hundred KB. One worker per
CPU of the container's quota (``GatewaySettings.workers``); the callers run
:meth:`DecodePool.prepare` in a thread pool of the same size, so a call never
waits for a worker.

A worker that dies mid-decode (the kernel's OOM killer picks the largest process
in the container: a worker over its budget, not the gateway) answers
:class:`DecodeFailed` and is replaced too.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import numpy as np

from clothing import tracing
from clothing.gateway.errors import GatewayError, TooLarge
from clothing.gateway.imaging import InputSpec, prepare

log = logging.getLogger("clothing.gateway")

DEFAULT_DECODE_TIMEOUT = 5.0
_PRELOAD = ["clothing.gateway.imaging"]


class DecodeTooSlow(TooLarge):
    """The image took longer than the deadline to decode; its worker was stopped."""


class DecodeFailed(TooLarge):
    """The worker decoding the image died (killed for memory, most likely)."""


@dataclass(frozen=True)
class _Job:
    spec: InputSpec
    max_pixels: int
    max_decode_bytes: int


def _serve(connection: Connection) -> None:
    """A worker's loop: a job and its bytes in, a row or the refusal out."""
    while True:
        try:
            job: _Job = connection.recv()
            data = connection.recv_bytes()
        except (EOFError, OSError):  # the gateway is gone
            return
        stage_times: tracing.StageTimes = []
        try:
            row = prepare(
                data,
                job.spec,
                max_pixels=job.max_pixels,
                max_decode_bytes=job.max_decode_bytes,
                stage_times=stage_times,
            )
        except GatewayError as error:
            connection.send(error)
            continue
        except Exception as error:  # anything else is reported, never fatal
            connection.send(GatewayError(f"decoding failed: {type(error).__name__}"))
            continue
        # The row's own buffer, not a pickle of it: one copy less on each side.
        connection.send((row.shape, row.dtype.str, stage_times))
        connection.send_bytes(np.ascontiguousarray(row).data.cast("B"))


class _Worker:
    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        ours, theirs = context.Pipe()
        self.connection: Connection = ours
        self.process: BaseProcess = context.Process(  # type: ignore[attr-defined]
            target=_serve, args=(theirs,), name="decode", daemon=True
        )
        self.process.start()
        theirs.close()

    def stop(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.connection.close()


class DecodePool:
    """``workers`` decoding processes; :meth:`prepare` blocks, so call it from threads."""

    def __init__(self, workers: int, timeout: float = DEFAULT_DECODE_TIMEOUT) -> None:
        self.timeout = timeout
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(_PRELOAD)
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        for _ in range(workers):
            self._idle.put(self._start())

    def prepare(
        self, data: bytes, spec: InputSpec, max_pixels: int, max_decode_bytes: int
    ) -> np.ndarray:
        """What :func:`.imaging.prepare` answers, from a worker, within the deadline."""
        worker = self._idle.get()
        try:
            worker.connection.send(_Job(spec, max_pixels, max_decode_bytes))
            worker.connection.send_bytes(data)
            if not worker.connection.poll(self.timeout):
                worker = self._replace(worker, "ran past its deadline")
                raise DecodeTooSlow(
                    f"the image takes more than {self.timeout:g} s to decode; it was stopped"
                )
            answer = worker.connection.recv()
            if not isinstance(answer, GatewayError):
                shape, dtype, stage_times = answer
                pixels = worker.connection.recv_bytes()
                tracing.record_spans(stage_times)  # the worker's decode and resize
        except (EOFError, OSError):
            worker = self._replace(worker, "died")
            raise DecodeFailed("the image could not be decoded within the memory limit") from None
        finally:
            self._idle.put(worker)
        if isinstance(answer, GatewayError):
            raise answer
        return np.frombuffer(pixels, dtype=np.dtype(dtype)).reshape(shape)

    def _start(self) -> _Worker:
        worker = _Worker(self._context)
        with self._lock:
            self._all.add(worker)
        return worker

    def _replace(self, worker: _Worker, why: str) -> _Worker:
        log.warning("decode worker %s %s; starting another", worker.process.pid, why)
        with self._lock:
            self._all.discard(worker)
        worker.stop()
        return self._start()

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._all if w.process.pid is not None]

    def close(self) -> None:
        with self._lock:
            workers, self._all = list(self._all), set()
        for worker in workers:
            worker.stop()
