"""Runtimes behind a small interface: ``load``, ``signature``, ``predict``, ``unload``.

:class:`OnnxBackend` runs one ONNX Runtime session per loaded version. The
execution providers (CPU, CUDA, TensorRT) and thread counts are settings;
a requested provider that this ONNX Runtime build or machine lacks is an error
that names the ones available, never a silent fall back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from clothing.model_server.config import RuntimeConfig, provider_name
from clothing.serving_layout import ONNX_TYPES

log = logging.getLogger(__name__)

# A run over more rows than this hands the memory it grew ONNX Runtime's CPU arena by
# back afterwards. The arena otherwise keeps its largest size for the life of the
# session: one 64-row batch of the bundled model left the process at 742 MB against
# 168 MB idle. Shrinking after every run was measured slower, and turning the arena
# off made batch 8 1.35x slower (docs/reliability.md); up to the gateway's largest
# batch (16 rows) the arena keeps its memory for the next run.
ARENA_SHRINK_ABOVE_ROWS = 16


@dataclass(frozen=True)
class TensorSpec:
    """A signature tensor: its name, numpy dtype name and shape (None = dynamic)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ", ".join("-1" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    method_name: str = "tensorflow/serving/predict"

    def describe(self) -> str:
        ins = ", ".join(spec.describe() for spec in self.inputs)
        outs = ", ".join(spec.describe() for spec in self.outputs)
        return f"inputs ({ins}) -> outputs ({outs})"


class Backend(Protocol):
    """What the server needs from a runtime; it never sees batching or transports."""

    def load(self, path: Path) -> None: ...

    def signature(self) -> Signature: ...

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def predict_alone(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``predict`` for a call that has the machine to itself (may use more threads)."""
        ...

    def unload(self) -> None: ...


class BackendError(Exception):
    """A model that cannot be loaded, or a runtime failure."""


def resolve_providers(requested: Sequence[str]) -> list[str]:
    """Full provider names; unavailable ones raise :class:`BackendError`."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    names = [provider_name(p) for p in requested if p.strip()]
    missing = [name for name in names if name not in available]
    if missing:
        raise BackendError(
            f"execution provider(s) {', '.join(missing)} not available in this ONNX Runtime "
            f"build; available: {', '.join(available)} (CUDA and TensorRT need "
            "onnxruntime-gpu and a GPU)"
        )
    return names or ["CPUExecutionProvider"]


def _fixed(dims: Sequence[int | None]) -> tuple[int, ...]:
    """Dimensions already checked to be known, typed as such."""
    return tuple(d for d in dims if d is not None)


def _dim(value: object) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def _shrink_arena_after() -> object:
    import onnxruntime

    options = onnxruntime.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


class OnnxBackend:
    """One ONNX Runtime inference session, and a wider one for lone batches if configured."""

    def __init__(self, runtime: RuntimeConfig) -> None:
        self._runtime = runtime
        self._session: object | None = None
        self._solo_session: object | None = None
        self._signature: Signature | None = None

    def _new_session(self, path: Path, intra_op_threads: int) -> object:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = self._runtime.inter_op_threads
        # Worker threads spin between the operators of a run (fast), but not after it:
        # left spinning, they burnt 24 ms of CPU per 9 ms run with requests 5 ms apart,
        # taken from the gRPC handlers and any gateway beside the server. Without
        # spinning at all (allow_spinning 0) each run was 0.5 ms slower.
        options.add_session_config_entry("session.force_spinning_stop", "1")
        options.log_severity_level = 3  # errors only; our log reports load failures
        providers = resolve_providers(self._runtime.execution_providers)
        try:
            return onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # ONNX Runtime raises its own untyped errors
            raise BackendError(f"cannot load {path}: {error}") from error

    def load(self, path: Path) -> None:
        session = self._new_session(path, self._runtime.intra_op_threads)
        inputs = []
        for node in session.get_inputs():  # type: ignore[attr-defined]
            if node.type not in ONNX_TYPES:
                raise BackendError(f"input {node.name} has unsupported type {node.type}")
            inputs.append(
                TensorSpec(node.name, ONNX_TYPES[node.type], tuple(_dim(d) for d in node.shape))
            )
        outputs = []
        for node in session.get_outputs():  # type: ignore[attr-defined]
            if node.type not in ONNX_TYPES:
                raise BackendError(f"output {node.name} has unsupported type {node.type}")
            outputs.append(
                TensorSpec(node.name, ONNX_TYPES[node.type], tuple(_dim(d) for d in node.shape))
            )
        solo_threads = self._runtime.solo_intra_op_threads
        self._solo_session = self._new_session(path, solo_threads) if solo_threads else None
        self._session = session
        self._signature = Signature(tuple(inputs), tuple(outputs))
        self._warm_up(path)

    def _warm_up(self, path: Path) -> None:
        """Run every session once per warm-up batch size on zeros.

        A session's first run allocates its memory and picks its kernels (on a GPU:
        cuDNN's algorithm search, or TensorRT's engine build for each input shape,
        which takes seconds); here it happens before the version serves anyone. A
        model that cannot run zeros still loads: its first request pays instead.
        """
        sizes = self._runtime.warmup_batch_sizes
        specs = self.signature().inputs
        if not sizes:
            return
        if any(len(spec.shape) == 0 or None in spec.shape[1:] for spec in specs):
            log.info("%s: no warm-up, an input has unknown dimensions past the batch", path)
            return
        started = time.perf_counter()
        sessions = [s for s in (self._session, self._solo_session) if s is not None]
        try:
            for size in sizes:
                zeros = {
                    spec.name: np.zeros((size, *_fixed(spec.shape[1:])), dtype=spec.dtype)
                    for spec in specs
                }
                for session in sessions:
                    self._run(session, zeros)
        except Exception as error:  # ONNX Runtime raises its own untyped errors
            log.warning("%s: warm-up on zeros failed, serving without it: %s", path, error)
            return
        log.info(
            "%s: warmed up %d session(s) at batch size(s) %s in %.0f ms",
            path,
            len(sessions),
            ", ".join(str(size) for size in sizes),
            (time.perf_counter() - started) * 1000,
        )

    def signature(self) -> Signature:
        if self._signature is None:
            raise BackendError("model not loaded")
        return self._signature

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(self._session, inputs)

    def predict_alone(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(self._solo_session or self._session, inputs)

    def _run(
        self, session: object | None, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        if session is None:
            raise BackendError("model not loaded")
        names = [spec.name for spec in self.signature().outputs]
        rows = max((array.shape[0] for array in inputs.values() if array.ndim), default=0)
        options = _shrink_arena_after() if rows > ARENA_SHRINK_ABOVE_ROWS else None
        results = session.run(names, dict(inputs), options)  # type: ignore[attr-defined]
        return {name: np.asarray(value) for name, value in zip(names, results, strict=True)}

    def unload(self) -> None:
        # Dropping the last references frees the sessions' memory.
        self._session = None
        self._solo_session = None
