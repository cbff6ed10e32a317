"""TF Serving's configuration messages as this server's configuration.

Every text-format file the model server reads is one of TF Serving's own protobuf
messages, parsed by protobuf's ``text_format`` into the generated class:
``--model_config_file`` holds a ``ModelServerConfig``, ``--batching_parameters_file``
a ``BatchingParameters``, ``--monitoring_config_file`` a ``MonitoringConfig``. A file
TF Serving accepts is read the same way here, and a mistake is reported with the file,
line and column.

``models_from_proto`` is the one reading of a ``ModelServerConfig``: the file at
start-up, each re-read of it (``--model_config_file_poll_wait_seconds``) and
``HandleReloadConfigRequest`` all go through it, so they accept and refuse alike.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from google.protobuf import text_format
from google.protobuf.message import Message

from clothing.model_server.config import BatchingConfig, ModelConfig, VersionPolicy
from clothing.model_server.errors import InvalidArgument
from clothing.proto.tensorflow_serving.config import model_server_config_pb2 as config_pb2
from clothing.proto.tensorflow_serving.config import monitoring_config_pb2
from clothing.proto.tensorflow_serving.servables.tensorflow import session_bundle_config_pb2
from clothing.proto.tensorflow_serving.sources.storage_path import (
    file_system_storage_path_source_pb2 as storage_pb2,
)

log = logging.getLogger(__name__)

MessageT = TypeVar("MessageT", bound=Message)
Policy = storage_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy

# "tensorflow" too, so a TF Serving config file works unchanged: the model on disk is
# ONNX either way (``clothing convert`` writes a SavedModel out as ONNX).
SERVED_PLATFORMS = ("onnx", "tensorflow")
_SERVED_OR_UNSET = frozenset({"", *SERVED_PLATFORMS})
_NEWEST_ONLY = VersionPolicy("latest", num_versions=1)
TF_SERVING_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
# REST routes a metrics path must not shadow.
_TAKEN_PATHS = ("/v1/", "/healthz", "/readyz")
# text_format puts "line:column : " in front of its messages; the position is said apart.
_POSITION = re.compile(r"^\d+:\d+ : ")


def parse_text(text: str, message_type: type[MessageT], source: str) -> MessageT:
    """``text`` as a ``message_type``; ValueError names ``source``, the line and the problem."""
    message = message_type()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        problem = _POSITION.sub("", str(error))
        line, column = error.GetLine(), error.GetColumn()
        where = f"line {line}, column {column}: " if line is not None else ""
        raise ValueError(f"{source}: {where}{problem}") from None
    return message


def read_text_file(path: Path, message_type: type[MessageT]) -> MessageT:
    """The file at ``path`` as a ``message_type``; ValueError if unreadable or invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise ValueError(f"cannot read {path}: {reason}") from None
    return parse_text(text, message_type, str(path))


def models_from_proto(
    config: config_pb2.ModelServerConfig, *, root_dir: Path | None = None
) -> tuple[ModelConfig, ...]:
    """The models ``config`` lists; InvalidArgument says what is wrong with it.

    As in TF Serving: a name listed twice, a platform other than onnx or tensorflow,
    and a relative ``base_path`` with no ``root_dir`` to resolve it against are
    refused, and ``latest { num_versions: 0 }`` serves one version. ``root_dir`` is
    TF Serving's ``model_config_list_root_dir``: a config file's own folder.
    """
    if config.WhichOneof("config") != "model_config_list":
        raise InvalidArgument(
            "the config needs a model_config_list (custom_model_config is not supported)"
        )
    entries = config.model_config_list.config
    if not entries:
        raise InvalidArgument("the model_config_list names no model")
    _check_unique(entries)
    try:
        return tuple(_model(entry, root_dir) for entry in entries)
    except ValueError as error:
        raise InvalidArgument(str(error)) from None


def read_model_config_file(path: Path) -> tuple[ModelConfig, ...]:
    """The models a ``--model_config_file`` lists; relative base paths are relative to it."""
    config = read_text_file(path, config_pb2.ModelServerConfig)
    try:
        return models_from_proto(config, root_dir=path.absolute().parent)
    except InvalidArgument as error:
        raise ValueError(f"{path}: {error.message}") from None


def _check_unique(entries: Sequence[config_pb2.ModelConfig]) -> None:
    # One pass: a reload request may carry any number of entries.
    counts = Counter(entry.name for entry in entries)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise InvalidArgument(f"model {', '.join(repeated)} is listed more than once")


def _model(entry: config_pb2.ModelConfig, root_dir: Path | None) -> ModelConfig:
    if not entry.name or not entry.base_path:
        raise ValueError("every model config needs a name and a base_path")
    _check_platform(entry)
    return ModelConfig(
        name=entry.name,
        base_path=_base_path(entry, root_dir),
        policy=_policy(entry.model_version_policy),
        labels=dict(entry.version_labels),
    )


def _check_platform(entry: config_pb2.ModelConfig) -> None:
    """TF Serving's rules, with an unset platform meaning ONNX (as it always has here)."""
    if entry.model_platform in _SERVED_OR_UNSET and not entry.model_type:
        return
    if entry.model_type != config_pb2.MODEL_TYPE_UNSPECIFIED:
        if entry.model_platform:
            raise ValueError(
                f"model {entry.name}: model_type (deprecated) and model_platform are both set"
            )
        if entry.model_type != config_pb2.TENSORFLOW:
            kind = config_pb2.ModelType.Name(entry.model_type)
            raise ValueError(f"model {entry.name}: model_type {kind} is not served here")
    else:
        raise ValueError(
            f"model {entry.name}: model_platform {entry.model_platform!r} is not served here "
            f"({' or '.join(SERVED_PLATFORMS)})"
        )


def _base_path(entry: config_pb2.ModelConfig, root_dir: Path | None) -> Path:
    path = _path(entry.base_path)
    if path.is_absolute():
        return path
    if root_dir is None:
        raise ValueError(f"model {entry.name}: base_path must be an absolute path")
    return root_dir / path


# A reload request may name one directory under any number of names: each Path, the
# slowest part of reading an entry, is built once.
_path = functools.lru_cache(maxsize=1024)(Path)


def _policy(proto: Policy) -> VersionPolicy:
    choice = proto.WhichOneof("policy_choice")
    if choice is None:
        return _NEWEST_ONLY
    if choice == "all":
        return VersionPolicy("all")
    if choice == "specific":
        return VersionPolicy("specific", versions=frozenset(proto.specific.versions))
    # TF Serving always serves at least the newest version.
    return VersionPolicy("latest", num_versions=max(proto.latest.num_versions, 1))


BatchingParameters = session_bundle_config_pb2.BatchingParameters


def batching_from_proto(parameters: BatchingParameters, base: BatchingConfig) -> BatchingConfig:
    """``base`` with the values ``parameters`` sets; ValueError if the result is invalid.

    ``thread_pool_name`` and ``pad_variable_length_inputs`` change nothing here (every
    model has its own threads; inputs are never padded along other axes): a warning.
    """
    ignored = []
    if parameters.HasField("thread_pool_name"):
        ignored.append("thread_pool_name")
    if parameters.pad_variable_length_inputs:
        ignored.append("pad_variable_length_inputs")
    if ignored:
        log.warning("batching parameter(s) %s have no effect here", ", ".join(ignored))

    def value(name: str, default: int) -> int:
        return int(getattr(parameters, name).value) if parameters.HasField(name) else default

    return BatchingConfig(
        max_batch_size=value("max_batch_size", base.max_batch_size),
        batch_timeout_micros=value("batch_timeout_micros", base.batch_timeout_micros),
        max_enqueued_batches=value("max_enqueued_batches", base.max_enqueued_batches),
        num_batch_threads=value("num_batch_threads", base.num_batch_threads),
        allowed_batch_sizes=tuple(parameters.allowed_batch_sizes) or base.allowed_batch_sizes,
    )


def read_batching_parameters_file(path: Path, base: BatchingConfig) -> BatchingConfig:
    """``base`` overridden by a ``--batching_parameters_file``; ValueError names the file."""
    parameters = read_text_file(path, BatchingParameters)
    try:
        return batching_from_proto(parameters, base)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def prometheus_path(config: monitoring_config_pb2.MonitoringConfig) -> str | None:
    """Where ``config`` asks the metrics to be served, or None when it does not.

    ``prometheus_config { enable: true path: "..." }``; without ``path``, TF Serving's
    own default.
    """
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    path = prometheus.path or TF_SERVING_PROMETHEUS_PATH
    if not path.startswith("/"):
        raise ValueError(f"prometheus_config path must start with /, got {path!r}")
    if path.startswith(_TAKEN_PATHS):
        raise ValueError(f"prometheus_config path {path} would hide an API route")
    return path


def read_monitoring_config_file(path: Path) -> str | None:
    """The metrics path a ``--monitoring_config_file`` asks for; ValueError names the file."""
    config = read_text_file(path, monitoring_config_pb2.MonitoringConfig)
    try:
        return prometheus_path(config)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
