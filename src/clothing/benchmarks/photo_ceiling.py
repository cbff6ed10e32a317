"""The photo-in ceiling: photos to probabilities in this process, and nothing else.

Each photo is decoded at the smallest JPEG scale at or above the model's side
(``draft``), made RGB and resized bilinearly to the model's size; batches of
``batch_size`` go through one ONNX Runtime session with default options (a thread
per core) while a pool of a thread per core (the cgroup quota's) decodes the next
batch. No HTTP, no JSON, no base64, no second process, no limits or checks: the
physical limit of this work on these cores, which every served system is divided by.
"""

from __future__ import annotations

import asyncio
import io
import math
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from clothing import cgroup
from clothing.benchmarks.level1 import new_session
from clothing.benchmarks.loadgen import LoadResult
from clothing.serving_layout import ModelMetadata

NAME = "photo-ceiling"
# Within the 4-16 that ONNX Runtime runs best on CPUs (level 1's sweep), and small
# enough that decoding the next batch overlaps most of this one's inference.
BATCH_SIZE = 8


def decode_row(data: bytes, width: int, height: int) -> np.ndarray:
    """Bytes to one ``[H, W, 3]`` uint8 row: reduced-scale decode, RGB, bilinear resize."""
    image = Image.open(io.BytesIO(data))
    side = max(width, height)
    image.draft("RGB", (side, side))
    rgb = image.convert("RGB")
    return np.asarray(rgb.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)


class PhotoCeiling:
    """Runs the ceiling in blocks; each block's result is shaped like a served system's."""

    def __init__(
        self,
        info: ModelMetadata,
        photos: Sequence[bytes],
        providers: Sequence[str],
        *,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        if not photos:
            raise ValueError("no photos")
        self._info = info
        self._photos = list(photos)
        self._batch_size = batch_size
        self._session = new_session(info, providers)
        self._pool = ThreadPoolExecutor(cgroup.available_cpus(), thread_name_prefix="ceiling")
        self._next_photo = 0
        self._run_batch(self._decode_batch())  # warm-up: Pillow's plugins, ORT's first run

    def close(self) -> None:
        self._pool.shutdown()

    async def block(self, images: int | None, seconds: float | None) -> LoadResult:
        """At least ``images`` photos, or about ``seconds``, whichever ends first."""
        return await asyncio.to_thread(self.run, images, seconds)

    def run(self, images: int | None, seconds: float | None) -> LoadResult:
        if images is None and seconds is None:
            raise ValueError("give a number of images or a duration")
        batches = math.ceil(images / self._batch_size) if images is not None else None
        latencies: list[float] = []
        started = time.perf_counter()
        pending = self._submit_batch()
        while True:
            began = time.perf_counter()
            rows = np.stack([future.result() for future in pending])
            done = len(latencies) + 1
            last = (batches is not None and done >= batches) or (
                seconds is not None and began - started >= seconds
            )
            if not last:
                pending = self._submit_batch()  # decoded while this batch runs
            self._run_batch(rows)
            latencies.append(time.perf_counter() - began)
            if last:
                break
        return LoadResult(
            concurrency=self._batch_size,
            latencies_s=tuple(latencies),
            errors=0,
            elapsed_s=time.perf_counter() - started,
            images_per_request=self._batch_size,
        )

    def _submit_batch(self) -> list[Future[np.ndarray]]:
        futures = []
        for _ in range(self._batch_size):
            data = self._photos[self._next_photo % len(self._photos)]
            self._next_photo += 1
            futures.append(self._pool.submit(decode_row, data, self._info.width, self._info.height))
        return futures

    def _decode_batch(self) -> np.ndarray:
        return np.stack([future.result() for future in self._submit_batch()])

    def _run_batch(self, rows: np.ndarray) -> Any:
        feed = {self._info.input_name: self._info.to_model_input(rows)}
        return self._session.run([self._info.output_name], feed)
