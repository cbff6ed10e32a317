"""The gateway's pipeline, free of HTTP types: fetch -> preprocess -> Predict -> label.

A batch is fetched and decoded concurrently, then sent as ONE multi-row
Predict request; an image that fails to fetch or decode fails alone and the
others are still classified. Decoding and resizing run in a worker pool, never
on the event loop.

What the model expects is cached from ``GetModelMetadata`` and refreshed when
Predict answers with another version (a new version was rolled out) or rejects
the request (its input changed): then the kept bytes are preprocessed again for
the new input and sent once more.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

import numpy as np

from clothing import request_context, tracing
from clothing.gateway.errors import (
    AddressRefused,
    BadRequest,
    GatewayError,
    ModelServerError,
)
from clothing.gateway.fetch import ImageFetcher
from clothing.gateway.http_get import Lease
from clothing.gateway.imaging import DEFAULT_MAX_DECODE_BYTES, InputSpec, prepare
from clothing.gateway.metrics import GatewayMetrics
from clothing.gateway.model_client import ModelClient, ModelInfo


@dataclass(frozen=True)
class ImageInput:
    """One image to classify: a URL to fetch or bytes already received."""

    url: str | None = None
    data: bytes | None = None

    def __post_init__(self) -> None:
        if (self.url is None) == (self.data is None):
            raise BadRequest("give exactly one of an image URL or image bytes")


@dataclass
class Classification:
    label: str
    predictions: dict[str, float]
    model_name: str
    model_version: int
    timing_ms: dict[str, float]


@dataclass
class _Loaded:
    """An image's bytes and its preprocessed row, with what it cost."""

    data: bytes
    row: np.ndarray
    fetch_ms: float
    preprocess_ms: float


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


# Bytes, input, max pixels, max decode bytes -> the model-input row (blocking).
Decode = Callable[[bytes, InputSpec, int, int], np.ndarray]


def _prepare_in_pool(
    data: bytes, spec: InputSpec, max_pixels: int, max_decode_bytes: int
) -> np.ndarray:
    return prepare(data, spec, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes)


@dataclass
class Classifier:
    fetcher: ImageFetcher
    model: ModelClient
    pool: Executor
    metrics: GatewayMetrics
    max_pixels: int
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES
    # Run in ``pool``; the gateway passes its worker processes' (decode_pool.DecodePool).
    decode: Decode = _prepare_in_pool
    labels: tuple[str, ...] | None = None
    ready_cache_seconds: float = 1.0
    _info: ModelInfo | None = field(default=None, init=False)
    _info_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _ready_at: float = field(default=-1e9, init=False)
    _ready: bool = field(default=False, init=False)

    async def model_info(self, *, refresh: bool = False) -> ModelInfo:
        stale = self._info
        async with self._info_lock:
            # Another request may have refreshed while this one waited.
            if self._info is not None and not (refresh and self._info is stale):
                return self._info
            self._info = await self.model.metadata()
            return self._info

    async def ready(self) -> bool:
        """Model server answers and the model is AVAILABLE; cached ``ready_cache_seconds``."""
        now = time.monotonic()
        if now - self._ready_at < self.ready_cache_seconds:
            return self._ready
        try:
            self._ready = await self.model.is_available()
            if self._ready:
                await self.model_info()
        except GatewayError:
            self._ready = False
        self._ready_at = time.monotonic()
        return self._ready

    async def classify(self, item: ImageInput) -> Classification:
        (result,) = await self.classify_batch([item], fail_alone=False)
        if isinstance(result, GatewayError):
            raise result
        return result

    async def classify_batch(
        self, items: Sequence[ImageInput], *, fail_alone: bool = True
    ) -> list[Classification | GatewayError]:
        """One result per item; model server failures fail the whole call."""
        start = time.perf_counter()
        info = await self.model_info()
        loaded = await self._load_all(items, info.input, fail_alone=fail_alone)
        good = [(i, entry) for i, entry in enumerate(loaded) if isinstance(entry, _Loaded)]
        results: dict[int, Classification | GatewayError] = {
            i: entry for i, entry in enumerate(loaded) if isinstance(entry, GatewayError)
        }
        if good:
            rows = [entry for _, entry in good]
            scores, info, inference_ms = await self._predict(rows, info)
            classes = self._classes(info, scores.shape[1])
            total_ms = _ms_since(start)
            self.metrics.observe_stage("inference", inference_ms)
            self.metrics.observe_stage("total", total_ms)
            for (index, entry), row_scores in zip(good, scores, strict=True):
                timing = {
                    "fetch": entry.fetch_ms,
                    "preprocess": entry.preprocess_ms,
                    "inference": inference_ms,
                    "total": total_ms,
                }
                results[index] = _classification(row_scores, classes, info, timing)
        ordered = [results[i] for i in range(len(loaded))]
        for result in ordered:
            outcome = result.code if isinstance(result, GatewayError) else "ok"
            self.metrics.images.labels(outcome=outcome).inc()
        _note_request(loaded, ordered)
        return ordered

    async def _load_all(
        self, items: Sequence[ImageInput], spec: InputSpec, *, fail_alone: bool
    ) -> list[_Loaded | GatewayError]:
        # The request's download budget, shared by its URLs.
        urls = sum(item.url is not None for item in items)
        limits = self.fetcher.limits
        cap = min(limits.max_bytes, limits.max_total_bytes // max(urls, 1))
        tasks = [self._load(item, spec, cap) for item in items]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        loaded: list[_Loaded | GatewayError] = []
        for outcome in outcomes:
            if isinstance(outcome, GatewayError):
                if not fail_alone:
                    raise outcome
                loaded.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                loaded.append(outcome)
        return loaded

    async def _load(self, item: ImageInput, spec: InputSpec, max_fetch_bytes: int) -> _Loaded:
        fetch_ms = 0.0
        data = item.data
        lease = Lease(None)
        if item.url is not None:
            started = time.perf_counter()
            try:
                with tracing.span("fetch"):
                    fetched = await self.fetcher.fetch(item.url, max_fetch_bytes)
            except AddressRefused as error:
                self.metrics.refused_addresses.inc()
                self.metrics.image_failures.labels(stage="fetch", kind=error.code).inc()
                raise
            except GatewayError as error:
                self.metrics.image_failures.labels(stage="fetch", kind=error.code).inc()
                raise
            fetch_ms = _ms_since(started)
            data, lease = fetched.content, fetched.lease
            self.metrics.fetched_bytes.inc(len(data))
            self.metrics.observe_stage("fetch", fetch_ms)
        assert data is not None
        try:
            row, preprocess_ms = await self._preprocess(data, spec)
        except GatewayError as error:
            self.metrics.image_failures.labels(stage="decode", kind=error.code).inc()
            raise
        finally:
            lease.release()  # downloaded bytes count in the download budget until decoded
        return _Loaded(data, row, fetch_ms, preprocess_ms)

    async def _preprocess(self, data: bytes, spec: InputSpec) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        prepare_here = tracing.carry_context(self.decode)  # its spans nest in this one
        row = await loop.run_in_executor(
            self.pool, prepare_here, data, spec, self.max_pixels, self.max_decode_bytes
        )
        elapsed = _ms_since(started)
        self.metrics.observe_stage("preprocess", elapsed)
        return row, elapsed

    async def _predict(
        self, rows: list[_Loaded], info: ModelInfo
    ) -> tuple[np.ndarray, ModelInfo, float]:
        started = time.perf_counter()
        try:
            outcome = await self.model.predict(_batch_of(rows), info)
        except ModelServerError:
            # The input may have changed with a new version: learn it and try once more.
            fresh = await self.model_info(refresh=True)
            if fresh.input == info.input:
                raise
            for entry in rows:
                entry.row, entry.preprocess_ms = await self._preprocess(entry.data, fresh.input)
            info = fresh
            outcome = await self.model.predict(_batch_of(rows), info)
        if outcome.version != info.version:
            self.metrics.model_version_changes.inc()
            fresh = await self.model_info(refresh=True)
            info = (
                fresh if fresh.version == outcome.version else _with_version(info, outcome.version)
            )
        return outcome.probabilities, info, _ms_since(started)

    def _classes(self, info: ModelInfo, width: int) -> tuple[str, ...]:
        classes = self.labels or info.classes or tuple(f"class_{i}" for i in range(width))
        if len(classes) != width:
            raise ModelServerError(
                f"model answered {width} scores but {len(classes)} class names are known"
            )
        return classes


def _note_request(
    loaded: Sequence[_Loaded | GatewayError], results: Sequence[Classification | GatewayError]
) -> None:
    """The access line's model, stage timings and image sizes (never what the images show).

    A batch's images are fetched and preprocessed concurrently: the slowest counts.
    """
    images = [entry for entry in loaded if isinstance(entry, _Loaded)]
    answered = next((r for r in results if isinstance(r, Classification)), None)
    if answered is None:
        request_context.note(images=len(loaded))
        return
    request_context.note(
        images=len(loaded),
        image_bytes=sum(len(entry.data) for entry in images),
        model=answered.model_name,
        model_version=answered.model_version,
        stages_ms={
            "fetch": max(entry.fetch_ms for entry in images),
            "preprocess": max(entry.preprocess_ms for entry in images),
            "inference": answered.timing_ms["inference"],
            "total": answered.timing_ms["total"],
        },
    )


def _batch_of(rows: Sequence[_Loaded]) -> np.ndarray:
    """``[N, H, W, C]``; a lone row becomes a view with a batch axis instead of a copy."""
    if len(rows) == 1:
        return rows[0].row[np.newaxis]
    return np.stack([r.row for r in rows])


def _with_version(info: ModelInfo, version: int) -> ModelInfo:
    return replace(info, version=version)


def _classification(
    scores: np.ndarray, classes: Sequence[str], info: ModelInfo, timing_ms: dict[str, float]
) -> Classification:
    order = np.argsort(-scores, kind="stable")
    predictions = {classes[i]: float(scores[i]) for i in order}
    return Classification(
        label=classes[int(order[0])],
        predictions=predictions,
        model_name=info.name,
        model_version=info.version,
        timing_ms=timing_ms,
    )
