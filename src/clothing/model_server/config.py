"""Settings of the model server, validated at start-up.

Flag names follow TF Serving's. Models come from ``--model_name`` /
``--model_base_path`` (or the ``MODEL_NAME`` / ``MODEL_BASE_PATH`` variables the
TF Serving image reads) or from a ``--model_config_file`` in TF Serving's text
format. Invalid settings raise :class:`ValueError` with a message for the user.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from clothing.cgroup import available_cpus
from clothing.model_server import textproto

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Each served model costs a session, a metric series and a /readyz entry.
DEFAULT_MAX_MODELS = 16
# Rows one request may carry: 4x the gateway's largest batch (16) and the largest
# size the benchmark's in-process ceiling runs (64). The bundled model at 224x224
# peaks near 485 MB for 64 rows without the arena (docs/reliability.md), inside the
# pod's 2 GiB with room for the requests beside it.
DEFAULT_MAX_BATCH_ROWS = 64
# RPCs handled at once per transport; more get RESOURCE_EXHAUSTED / 429 at once
# rather than queueing work (and its memory) without bound.
DEFAULT_MAX_CONCURRENT_RPCS = 128
DEFAULT_MAX_CONCURRENT_REST = 16


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
    # --monitoring_config_file); /metrics always does.
    prometheus_path: str | None = None
    # The --model_config_file the models came from, re-read every
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
            raise ValueError(
                "no model to serve: pass --model_name and --model_base_path "
                "(or MODEL_NAME / MODEL_BASE_PATH), or --model_config_file"
            )
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names repeat: {names}")
        for port in (self.port, self.rest_api_port):
            if not 0 <= port <= 65535:
                raise ValueError(f"port {port} out of range")
        if self.port == self.rest_api_port and self.port != 0:
            raise ValueError("--port and --rest_api_port must differ")
        if self.poll_wait_seconds < 0:
            raise ValueError("--file_system_poll_wait_seconds must be >= 0")
        if self.config_poll_wait_seconds < 0:
            raise ValueError("--model_config_file_poll_wait_seconds must be >= 0")
        if self.config_poll_wait_seconds > 0 and self.model_config_file is None:
            raise ValueError("--model_config_file_poll_wait_seconds needs --model_config_file")
        if self.shutdown_grace_seconds < 0:
            raise ValueError("--shutdown_grace_seconds must be >= 0")
        if self.max_message_bytes < 1024:
            raise ValueError("--max_message_bytes must be at least 1024")
        self._check_limits()

    def _check_limits(self) -> None:
        for flag, value in (
            ("--max_models", self.max_models),
            ("--max_batch_rows", self.max_batch_rows),
            ("--max_concurrent_rpcs", self.max_concurrent_rpcs),
            ("--rest_max_concurrent_requests", self.max_concurrent_rest),
        ):
            if value < 1:
                raise ValueError(f"{flag} must be >= 1")
        if len(self.models) > self.max_models:
            raise ValueError(f"{len(self.models)} models configured, over --max_models")

    @property
    def model_roots(self) -> tuple[Path, ...]:
        """Where the reload RPC may load from: the flag's roots, else the parents of
        the models configured at start (resolved, so ``..`` and links cannot escape)."""
        roots = self.allowed_model_roots or tuple(m.base_path.parent for m in self.models)
        return tuple(dict.fromkeys(root.resolve() for root in roots))


def _one(message: textproto.Message, name: str, default: object = None) -> object:
    values = message.get(name, [])
    return values[-1] if values else default


def _wrapped_int(message: textproto.Message, name: str) -> int | None:
    """``max_batch_size { value: 32 }`` (a wrapper message) or ``max_batch_size: 32``."""
    value = _one(message, name)
    if isinstance(value, dict):
        value = _one(value, "value")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


# TF Serving fields a config file may carry that change nothing here: inputs are
# never padded along other axes, every model has its own threads, and requests
# are never split (one larger than max_batch_size runs alone).
IGNORED_BATCHING_PARAMETERS = frozenset(
    {
        "pad_variable_length_inputs",
        "thread_pool_name",
        "enable_large_batch_splitting",
        "max_execution_batch_size",
    }
)


def parse_batching_parameters(text: str, base: BatchingConfig) -> BatchingConfig:
    """Read a TF Serving ``--batching_parameters_file`` over ``base``."""
    message = textproto.parse(text)
    known = {
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "num_batch_threads",
        "allowed_batch_sizes",
        *IGNORED_BATCHING_PARAMETERS,
    }
    unknown = set(message) - known
    if unknown:
        raise ValueError(f"unknown batching parameters: {', '.join(sorted(unknown))}")
    values = {
        name: _wrapped_int(message, name)
        for name in (
            "max_batch_size",
            "batch_timeout_micros",
            "max_enqueued_batches",
            "num_batch_threads",
        )
    }
    merged = {
        name: getattr(base, name) if value is None else value for name, value in values.items()
    }
    allowed: list[int] = []
    for size in message.get("allowed_batch_sizes", []):
        if not isinstance(size, int) or isinstance(size, bool):
            raise ValueError(f"allowed_batch_sizes must be integers, got {size!r}")
        allowed.append(size)
    ignored = sorted(set(message) & IGNORED_BATCHING_PARAMETERS)
    if ignored:
        log.warning("batching parameter(s) %s have no effect here", ", ".join(ignored))
    return BatchingConfig(
        **merged,
        allowed_batch_sizes=tuple(allowed) or base.allowed_batch_sizes,
    )


def _policy(message: textproto.Message | None) -> VersionPolicy:
    if not message:
        return VersionPolicy()
    if "all" in message:
        return VersionPolicy("all")
    specific = _one(message, "specific")
    if isinstance(specific, dict):
        versions = specific.get("versions", [])
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in versions):
            raise ValueError("model_version_policy specific versions must be integers")
        return VersionPolicy("specific", versions=frozenset(int(v) for v in versions))
    latest = _one(message, "latest")
    if isinstance(latest, dict):
        count = _one(latest, "num_versions", 1)
        if not isinstance(count, int):
            raise ValueError("model_version_policy latest num_versions must be an integer")
        return VersionPolicy("latest", num_versions=count)
    raise ValueError(f"unknown model_version_policy {sorted(message)}")


def read_flag_file(path: Path, flag: str) -> str:
    """The text of the file ``flag`` names; ValueError (naming the flag) if unreadable."""
    try:
        return path.read_text()
    except OSError as error:
        raise ValueError(f"cannot read {flag}: {error}") from None


def read_model_config_file(path: Path) -> tuple[ModelConfig, ...]:
    """The models a ``--model_config_file`` names; base paths are relative to the file."""
    text = read_flag_file(path, "--model_config_file")
    return parse_model_config(text, relative_to=path.parent)


def parse_model_config(text: str, relative_to: Path | None = None) -> tuple[ModelConfig, ...]:
    """Read TF Serving's ``model_config_list { config { ... } }`` text."""
    message = textproto.parse(text)
    config_list = _one(message, "model_config_list")
    if not isinstance(config_list, dict):
        raise ValueError("the model config file needs a model_config_list { ... } block")
    models = []
    for entry in config_list.get("config", []):
        if not isinstance(entry, dict):
            raise ValueError("model_config_list config entries must be messages")
        name = _one(entry, "name")
        base_path = _one(entry, "base_path")
        if not isinstance(name, str) or not isinstance(base_path, str):
            raise ValueError("every model config needs a name and a base_path")
        platform = _one(entry, "model_platform", "onnx")
        if platform not in ("onnx", "tensorflow"):
            raise ValueError(f"model {name}: model_platform {platform!r} is not served here")
        labels: dict[str, int] = {}
        for pair in entry.get("version_labels", []):
            if not isinstance(pair, dict):
                raise ValueError(f"model {name}: version_labels entries are key/value pairs")
            key, value = _one(pair, "key"), _one(pair, "value")
            if not isinstance(key, str) or not isinstance(value, int):
                raise ValueError(f"model {name}: version_labels need a string key and int value")
            labels[key] = value
        policy_message = _one(entry, "model_version_policy")
        path = Path(base_path)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        models.append(
            ModelConfig(
                name=name,
                base_path=path,
                policy=_policy(policy_message if isinstance(policy_message, dict) else None),
                labels=labels,
            )
        )
    if not models:
        raise ValueError("the model config file lists no model")
    return tuple(models)


def parse_channel_arguments(text: str) -> tuple[tuple[str, int | str], ...]:
    """TF Serving's ``--grpc_channel_arguments``: ``key=value`` pairs, comma separated."""
    pairs: list[tuple[str, int | str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--grpc_channel_arguments: {item!r} is not key=value")
        value = value.strip()
        pairs.append((key.strip(), int(value) if value.lstrip("-").isdigit() else value))
    return tuple(pairs)


TF_SERVING_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
_TAKEN_PATHS = ("/v1/", "/healthz", "/readyz")


def parse_monitoring_config(text: str) -> str | None:
    """The metrics path a TF Serving ``--monitoring_config_file`` asks for, or None.

    ``prometheus_config { enable: true path: "..." }``; without ``path``, TF
    Serving's own default. A disabled or absent ``prometheus_config`` gives None.
    """
    message = textproto.parse(text)
    unknown = set(message) - {"prometheus_config"}
    if unknown:
        raise ValueError(f"unknown monitoring config fields: {', '.join(sorted(unknown))}")
    prometheus = _one(message, "prometheus_config", {})
    if not isinstance(prometheus, dict):
        raise ValueError("prometheus_config must be a message: prometheus_config { ... }")
    unknown = set(prometheus) - {"enable", "path"}
    if unknown:
        raise ValueError(f"unknown prometheus_config fields: {', '.join(sorted(unknown))}")
    if _one(prometheus, "enable", False) is not True:
        return None
    path = _one(prometheus, "path", "") or TF_SERVING_PROMETHEUS_PATH
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"prometheus_config path must start with /, got {path!r}")
    if path.startswith(_TAKEN_PATHS):
        raise ValueError(f"prometheus_config path {path} would hide an API route")
    return path
