"""The transport-neutral core: predict, metadata and status over the repository.

gRPC and REST both convert their messages to numpy arrays and plain values,
call this module and convert back; nothing here sees a protobuf or a FastAPI
object. Inputs are checked against the signature so that a bad request gets a
message naming what the model expects.

A Predict's inputs can only be decoded once its version is chosen (REST bounds
its JSON by the signature), so a transport hands :meth:`Dataplane.predict` a
:class:`IncomingPredict` to decode rather than arrays: the version is resolved
once, in one place, and a request refused while it is decoded is counted like
any other answer without the transport having to remember to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from clothing import request_context, tracing
from clothing.model_server.backend import Signature, TensorSpec
from clothing.model_server.errors import (
    INTERNAL_MESSAGE,
    Internal,
    InvalidArgument,
    NotFound,
    ServingError,
)
from clothing.model_server.metrics import ServerMetrics
from clothing.model_server.repository import ModelVersion, Repository

log = logging.getLogger(__name__)

UNKNOWN_LABEL = "(unknown)"
DEFAULT_SIGNATURE = "serving_default"
METADATA_FIELDS = ("signature_def", "model_info")


@dataclass(frozen=True)
class PredictTarget:
    """What a Predict asks for besides its inputs: a version or label (or neither), and
    which outputs (all when empty)."""

    version: int | None = None
    label: str | None = None
    output_filter: tuple[str, ...] = ()


class IncomingPredict(Protocol):
    """One Predict as a transport received it, decoded when the core asks.

    :meth:`Dataplane.predict` calls :meth:`receive`, resolves the version, then calls
    :meth:`decode` with that version's signature; a refusal from either is counted
    with the rest.
    """

    @property
    def signature_name(self) -> str:
        """The signature asked for, as far as known ("" is the default; REST learns
        it only once :meth:`decode` has parsed the body)."""
        ...

    async def receive(self) -> PredictTarget:
        """Everything needed before a version is held (REST reads its body here)."""
        ...

    async def decode(self, signature: Signature) -> Mapping[str, np.ndarray]:
        """The inputs as arrays, bounded by what ``signature`` can take."""
        ...


@dataclass(frozen=True)
class PredictResult:
    model: str
    version: int
    signature_name: str
    outputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class MetadataResult:
    model: str
    version: int
    fields: tuple[str, ...]
    signatures: dict[str, Signature]
    info: dict[str, Any]


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str
    error_code: str
    error_message: str


def check_signature_name(name: str) -> str:
    name = name or DEFAULT_SIGNATURE
    if name != DEFAULT_SIGNATURE:
        raise InvalidArgument(
            f"Serving signature name: {name!r} not found in signature def; "
            f"available signatures: [{DEFAULT_SIGNATURE!r}]"
        )
    return name


def check_rows(name: str, rows: int, max_rows: int) -> None:
    """Refuse an input with more rows than one request may carry."""
    if rows > max_rows:
        raise InvalidArgument(
            f"input {name} has {rows} rows, over the limit of {max_rows} per request "
            "(--max_batch_rows); split the batch"
        )


def _shape_matches(spec: TensorSpec, shape: tuple[int, ...]) -> bool:
    if len(spec.shape) != len(shape):
        return False
    return all(want is None or want == got for want, got in zip(spec.shape, shape, strict=True))


def validate_inputs(signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    """Names, dtypes, ranks and fixed dimensions must match the signature."""
    expected = {spec.name: spec for spec in signature.inputs}
    described = f"expected signature: {signature.describe()}"
    missing = sorted(set(expected) - set(inputs))
    unknown = sorted(set(inputs) - set(expected))
    if unknown:
        raise InvalidArgument(f"unknown input(s) {', '.join(unknown)}; {described}")
    if missing:
        raise InvalidArgument(f"missing input(s) {', '.join(missing)}; {described}")
    for name, array in inputs.items():
        spec = expected[name]
        if array.dtype.name != spec.dtype:
            raise InvalidArgument(
                f"input {name} has dtype {array.dtype.name}, expected {spec.dtype}; {described}"
            )
        if not _shape_matches(spec, array.shape):
            raise InvalidArgument(
                f"input {name} has shape {list(array.shape)}, expected "
                f"{[-1 if d is None else d for d in spec.shape]}; {described}"
            )


def _check_output_filter(signature: Signature, output_filter: Sequence[str]) -> None:
    known_outputs = [spec.name for spec in signature.outputs]
    unknown = sorted(set(output_filter) - set(known_outputs))
    if unknown:
        raise InvalidArgument(
            f"output_filter names unknown output(s) {', '.join(unknown)}; "
            f"outputs: {', '.join(known_outputs)}"
        )


@dataclass
class _Observed:
    """A Predict being served: the version label once its inputs are decoded, and the
    time its latency counts from (then too)."""

    version: str = "none"
    started: float = 0.0

    def accept(self, version: int) -> None:
        self.version = str(version)
        self.started = time.perf_counter()


class Dataplane:
    """Requests in plain values; answers in plain values; errors as ServingError."""

    def __init__(self, repository: Repository, metrics: ServerMetrics, executor: Executor) -> None:
        self.repository = repository
        self.metrics = metrics
        self._executor = executor

    def _labels(self, model: str, version: str, signature: str, transport: str) -> dict[str, str]:
        # Names a client made up become one label value each, so random names in
        # requests cannot grow the metrics without bound.
        return {
            "model": model if model in self.repository.models else UNKNOWN_LABEL,
            "version": version,
            "signature": signature if signature == DEFAULT_SIGNATURE else UNKNOWN_LABEL,
            "transport": transport,
        }

    @contextlib.contextmanager
    def _observe(self, model: str, request: IncomingPredict, transport: str) -> Iterator[_Observed]:
        """Count every Predict, refused or not, and time those that succeed."""
        observed = _Observed()
        code = "OK"
        try:
            yield observed
        except ServingError as error:
            code = error.code.grpc_name
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            signature = request.signature_name or DEFAULT_SIGNATURE
            labels = self._labels(model, observed.version, signature, transport)
            request_context.note(model=labels["model"], model_version=observed.version)
            self.metrics.requests.labels(**labels, code=code).inc()
            if code == "OK":
                self.metrics.latency.labels(**labels).observe(
                    time.perf_counter() - observed.started
                )

    async def predict(
        self, model: str, request: IncomingPredict, *, transport: str
    ) -> PredictResult:
        """Resolve the version once, decode the request against it, check and run it."""
        with self._observe(model, request, transport) as observed:
            target = await request.receive()
            async with self.repository.lease(model, target.version, target.label) as chosen:
                signature = self._signature(chosen)
                inputs = await request.decode(signature)
                # A request refused while decoded keeps version "none": no version took it.
                observed.accept(chosen.version)
                signature_name = check_signature_name(request.signature_name)
                validate_inputs(signature, inputs)
                _check_output_filter(signature, target.output_filter)
                outputs = await self._run(chosen, inputs)
            if target.output_filter:
                outputs = {name: outputs[name] for name in target.output_filter}
            return PredictResult(model, chosen.version, signature_name, outputs)

    def _signature(self, chosen: ModelVersion) -> Signature:
        if chosen.signature is None:
            raise Internal(INTERNAL_MESSAGE)
        return chosen.signature

    async def _run(
        self, chosen: ModelVersion, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        backend = chosen.backend
        if backend is None:
            raise Internal(INTERNAL_MESSAGE)
        try:
            if chosen.batcher is not None:
                # The batcher times each batched runtime call and each request's wait.
                return await chosen.batcher.predict(inputs)
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            try:
                with tracing.span("run"):
                    return await loop.run_in_executor(self._executor, backend.predict, inputs)
            finally:
                ran = time.perf_counter() - started
                self.metrics.runtime_latency.labels(chosen.model, str(chosen.version)).observe(ran)
                request_context.note(run_ms=round(ran * 1000.0, 3))
        except ServingError:
            raise
        except Exception as error:
            log.exception("model %s version %d failed", chosen.model, chosen.version)
            raise Internal(INTERNAL_MESSAGE) from error

    def metadata(
        self,
        model: str,
        fields: Sequence[str] = (),
        *,
        version: int | None = None,
        label: str | None = None,
    ) -> MetadataResult:
        wanted = tuple(fields) or ("signature_def",)
        unknown = [name for name in wanted if name not in METADATA_FIELDS]
        if unknown:
            raise InvalidArgument(
                f"metadata field(s) {', '.join(unknown)} not supported; "
                f"supported: {', '.join(METADATA_FIELDS)}"
            )
        chosen = self.repository.model(model).resolve(version, label)
        signatures = {DEFAULT_SIGNATURE: self._signature(chosen)}
        return MetadataResult(model, chosen.version, wanted, signatures, dict(chosen.info))

    def status(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> list[VersionStatus]:
        found = self.repository.model(model)
        if label is not None:
            version = found.resolve(None, label).version
        versions = sorted(found.versions.values(), key=lambda v: v.version, reverse=True)
        if version is not None:
            versions = [v for v in versions if v.version == version]
            if not versions:
                raise NotFound(f"Could not find version {version} of model {model}")
        return [
            VersionStatus(
                v.version,
                v.state,
                "UNKNOWN" if v.error else "OK",
                v.error,
            )
            for v in versions
        ]
