"""Settings of the model server, validated when built.

Field names follow TF Serving's flags where there is one. Invalid settings raise
:class:`ValueError`; a :class:`InvalidSetting` names its fields, so the command line
(``model_server.cli``) can name them as the flags they came from. Reading TF Serving's
config files into these classes is ``model_server.tf_serving_config``'s job.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from clothing.cgroup import available_cpus

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Each served model costs a session, a metric series and a /readyz entry.
DEFAULT_MAX_MODELS = 16
# Rows one request may carry: 4x the gateway's largest batch (16) and the largest
# size the benchmark's in-process ceiling runs (64). Version 1 of the bundled model
# (224x224) peaked near 485 MB for 64 rows without the arena (docs/reliability.md);
# version 3 (EfficientNet-Lite1, 272x272) peaks near 660 MB in process, still inside
# the pod's 2 GiB with room for the requests beside it (tests/containers run it under
# that limit).
DEFAULT_MAX_BATCH_ROWS = 64
# RPCs handled at once per transport; more get RESOURCE_EXHAUSTED / 429 at once
# rather than queueing work (and its memory) without bound.
DEFAULT_MAX_CONCURRENT_RPCS = 128
DEFAULT_MAX_CONCURRENT_REST = 16


class InvalidSetting(ValueError):
    """A setting out of bounds. The message names fields as ``{field}`` placeholders
    (``"{port} and {rest_api_port} must differ"``), so a front end can say them its own
    way; ``str()`` says them as the field names."""

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.naming(lambda field_name: field_name))

    def naming(self, name: Callable[[str], str]) -> str:
        """The message with every field said as ``name(field)``."""
        return self.template.format_map(_Names(name))


class _Names(dict[str, str]):
    def __init__(self, name: Callable[[str], str]) -> None:
        super().__init__()
        self.name = name

    def __missing__(self, key: str) -> str:
        return self.name(key)


@dataclass(frozen=True)
class VersionPolicy:
    """Which of the versions found on disk to serve: latest n, all, or specific ones."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if self.kind == "latest" and self.num_versions < 1:
            raise ValueError("model_version_policy latest needs num_versions >= 1")
        if self.kind == "specific" and not self.versions:
            raise ValueError("model_version_policy specific needs at least one version")

    def select(self, found: Iterable[int]) -> set[int]:
        versions = sorted(set(found), reverse=True)
        if self.kind == "all":
            return set(versions)
        if self.kind == "specific":
            return set(versions) & set(self.versions)
        return set(versions[: self.num_versions])

    def describe(self) -> str:
        if self.kind == "latest":
            return f"latest {self.num_versions}"
        if self.kind == "specific":
            return "specific " + ", ".join(str(v) for v in sorted(self.versions))
        return "all"


@dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or ":" in self.name:
            raise ValueError(f"invalid model name {self.name!r}")


@dataclass(frozen=True)
class BatchingConfig:
    """Dynamic batching parameters, named after TF Serving's ``BatchingParameters``."""

    # Small batches measured fastest on CPU (docs/model-server.md); raise it on a GPU.
    max_batch_size: int = 8
    batch_timeout_micros: int = 1000
    max_enqueued_batches: int = 10
    # The CPUs of the container's quota, not the node's cores (clothing.cgroup).
    num_batch_threads: int = field(default_factory=available_cpus)
    # Batch sizes a runtime call may have; a smaller batch is padded up to the next
    # one. A GPU engine built per input shape (TensorRT) then sees only these shapes.
    allowed_batch_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        sizes = self.allowed_batch_sizes
        if sizes and (
            sizes[0] < 1
            or any(later <= earlier for earlier, later in itertools.pairwise(sizes))
            or sizes[-1] != self.max_batch_size
        ):
            raise ValueError(
                f"allowed_batch_sizes {list(sizes)} must be positive, increasing and end "
                f"with max_batch_size ({self.max_batch_size})"
            )
        if self.batch_timeout_micros < 0:
            raise ValueError("batch_timeout_micros must be >= 0")
        if self.max_enqueued_batches < 1:
            raise ValueError("max_enqueued_batches must be >= 1")
        if self.num_batch_threads < 1:
            raise ValueError("num_batch_threads must be >= 1")

    @property
    def max_queued_rows(self) -> int:
        return self.max_enqueued_batches * self.max_batch_size

    def padded_size(self, rows: int) -> int:
        """The allowed batch size ``rows`` is padded up to (``rows`` itself if none fits)."""
        return next((size for size in self.allowed_batch_sizes if size >= rows), rows)


PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def provider_name(requested: str) -> str:
    """ONNX Runtime's full name for an execution provider (``cpu`` -> ``CPUExecutionProvider``)."""
    return PROVIDER_ALIASES.get(requested.strip().lower(), requested.strip())


@dataclass(frozen=True)
class RuntimeConfig:
    """ONNX Runtime session options shared by every loaded version."""

    execution_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int = 0  # 0: auto, see resolved_for
    inter_op_threads: int = 0
    # Threads of a second session for a batch that runs alone (0: no second session).
    solo_intra_op_threads: int = 0
    # Batch sizes each session runs once on zeros before its version turns AVAILABLE
    # (empty: no warm-up); with allowed_batch_sizes, resolved_for warms those instead.
    warmup_batch_sizes: tuple[int, ...] = (1,)

    def resolved_for(self, batching: BatchingConfig | None) -> RuntimeConfig:
        """Fill in the warm-up sizes, and ``intra_op_threads`` = 0 so parallel batches do not
        oversubscribe the cores.

        Warm-up runs the batch sizes a batch may be padded to (``allowed_batch_sizes``),
        else batch 1: a GPU engine built per input shape is built before any request.

        ``num_batch_threads`` batches run at once, each in its own ``session.run``; if
        each also took every core (ONNX Runtime's default), two batches on two cores
        would run four spinning threads, which measured twice the CPU per image. So each
        session gets ``cores // num_batch_threads`` threads (at least 1). That share
        would leave cores idle while a single batch runs alone (a lone request at low
        load took twice as long on one thread of two), so on CPU a second session with
        a thread per core serves the batches that find no other batch running and
        nothing queued. Without batching, a thread per core keeps a lone request fastest.

        "Cores" are the CPUs the container's quota allows (``available_cpus``): ONNX
        Runtime's own default counts the node's cores, and a 1-CPU pod on a 16-core node
        running 16 spinning threads is throttled most of each period.
        """
        warmed = self
        if self.warmup_batch_sizes and batching is not None and batching.allowed_batch_sizes:
            warmed = replace(self, warmup_batch_sizes=batching.allowed_batch_sizes)
        if self.intra_op_threads != 0:
            return warmed
        cores = available_cpus()
        if batching is None:
            return replace(warmed, intra_op_threads=cores)
        share = max(1, cores // batching.num_batch_threads)
        solo = cores if share < cores and self.cpu_only else 0
        return replace(warmed, intra_op_threads=share, solo_intra_op_threads=solo)

    @property
    def cpu_only(self) -> bool:
        # A GPU session gains nothing from more CPU threads but would hold a second
        # copy of the weights in device memory.
        return all(provider_name(p) == "CPUExecutionProvider" for p in self.execution_providers)


@dataclass(frozen=True)
class ServerConfig:
    models: tuple[ModelConfig, ...]
    host: str = "0.0.0.0"  # noqa: S104 - a server in a container listens on every interface
    port: int = 8500
    rest_api_port: int = 8501
    poll_wait_seconds: float = 1.0
    batching: BatchingConfig | None = None
    runtime: RuntimeConfig = RuntimeConfig()
    grpc_channel_arguments: tuple[tuple[str, int | str], ...] = ()
    shutdown_grace_seconds: float = 10.0
    response_tensor_content: bool = False
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    cors_origins: tuple[str, ...] = ()
    # Where the REST port also serves the Prometheus metrics (TF Serving's
    # MonitoringConfig); /metrics always does.
    prometheus_path: str | None = None
    # The ModelServerConfig text file the models came from, re-read every
    # config_poll_wait_seconds when that is above 0.
    model_config_file: Path | None = None
    config_poll_wait_seconds: float = 0.0
    # Whether gRPC clients may replace the served models (HandleReloadConfigRequest).
    # TF Serving allows it; here it is off unless the operator turns it on.
    allow_config_reload_rpc: bool = False
    # Directories the reload RPC may load models from (empty: the parent directory
    # of each model configured at start).
    allowed_model_roots: tuple[Path, ...] = ()
    # Most models served at once, however they are configured.
    max_models: int = DEFAULT_MAX_MODELS
    # Most rows (first dimension) of any input in one request.
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS
    max_concurrent_rest: int = DEFAULT_MAX_CONCURRENT_REST

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("no model to serve")
        for field_name in ("port", "rest_api_port"):
            port = getattr(self, field_name)
            if not 0 <= port <= 65535:
                raise InvalidSetting(f"{{{field_name}}} {port} is out of range (0-65535)")
        if self.port == self.rest_api_port and self.port != 0:
            raise InvalidSetting("{port} and {rest_api_port} must differ")
        for field_name in (
            "poll_wait_seconds",
            "config_poll_wait_seconds",
            "shutdown_grace_seconds",
        ):
            if getattr(self, field_name) < 0:
                raise InvalidSetting(f"{{{field_name}}} must be >= 0")
        if self.config_poll_wait_seconds > 0 and self.model_config_file is None:
            raise InvalidSetting("{config_poll_wait_seconds} needs {model_config_file}")
        if self.max_message_bytes < 1024:
            raise InvalidSetting("{max_message_bytes} must be at least 1024")
        self._check_limits()

    def _check_limits(self) -> None:
        for field_name in (
            "max_models",
            "max_batch_rows",
            "max_concurrent_rpcs",
            "max_concurrent_rest",
        ):
            if getattr(self, field_name) < 1:
                raise InvalidSetting(f"{{{field_name}}} must be >= 1")
        if len(self.models) > self.max_models:
            raise InvalidSetting(f"{len(self.models)} models configured, over {{max_models}}")

    @property
    def model_roots(self) -> tuple[Path, ...]:
        """Where the reload RPC may load from: allowed_model_roots, else the parents of
        the models configured at start (resolved, so ``..`` and links cannot escape)."""
        roots = self.allowed_model_roots or tuple(m.base_path.parent for m in self.models)
        return tuple(dict.fromkeys(root.resolve() for root in roots))
