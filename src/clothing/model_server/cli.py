"""Serve ONNX models over TensorFlow Serving's gRPC and REST APIs.

Flags follow TF Serving's names. Models come from --model_name and
--model_base_path (or the MODEL_NAME and MODEL_BASE_PATH variables, the base
path defaulting to /models/${MODEL_NAME}) or from --model_config_file.
Repository layout: BASE_PATH/<integer version>/model.onnx, optionally with
metadata.json or classes.txt beside it.

Beyond TF Serving: GET /healthz, /readyz and /metrics on the REST port.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from clothing import logs, tracing
from clothing.logs import FORMATS
from clothing.model_server.config import (
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_MAX_CONCURRENT_REST,
    DEFAULT_MAX_CONCURRENT_RPCS,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_MODELS,
    BatchingConfig,
    InvalidSetting,
    ModelConfig,
    RuntimeConfig,
    ServerConfig,
)
from clothing.model_server.tf_serving_config import (
    read_batching_parameters_file,
    read_model_config_file,
    read_monitoring_config_file,
)

Group = argparse._ArgumentGroup
T = TypeVar("T")

# ServerConfig fields whose flag is not "--" + the field's name.
FLAG_FOR_FIELD = {
    "poll_wait_seconds": "--file_system_poll_wait_seconds",
    "config_poll_wait_seconds": "--model_config_file_poll_wait_seconds",
    "max_concurrent_rest": "--rest_max_concurrent_requests",
}


def flag_for(field_name: str) -> str:
    """The flag that sets ServerConfig's ``field_name``."""
    return FLAG_FOR_FIELD.get(field_name, f"--{field_name}")


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _bool_flag(group: Group, name: str, help_text: str, *, default: bool = False) -> None:
    group.add_argument(
        name, type=_flag, nargs="?", const=True, default=default, metavar="BOOL", help=help_text
    )


def configure(parser: argparse.ArgumentParser) -> None:
    _add_network_flags(parser.add_argument_group("network"))
    _add_limit_flags(parser.add_argument_group("limits"))
    _add_model_flags(parser.add_argument_group("models"))
    _add_reload_rpc_flags(parser.add_argument_group("config reload RPC"))
    _add_batching_flags(parser.add_argument_group("dynamic batching"))
    _add_runtime_flags(parser.add_argument_group("ONNX Runtime"))
    parser.add_argument(
        "--log_level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity; DEBUG adds the access lines of probes and scrapes (default INFO)",
    )
    parser.add_argument(
        "--log_format",
        default=os.environ.get("MODEL_SERVER_LOG_FORMAT", "text"),
        choices=FORMATS,
        help="json: one JSON object per line (time, level, logger, message and an access "
        "line's fields), as the image logs; text: for a person "
        "(env MODEL_SERVER_LOG_FORMAT; default text)",
    )


def _add_network_flags(group: Group) -> None:
    group.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500)")
    group.add_argument(
        "--rest_api_port", type=int, default=8501, help="REST, health and metrics port (8501)"
    )
    group.add_argument(
        "--host",
        default="0.0.0.0",  # noqa: S104 - a container server listens on every interface
        help="address both ports bind to (default 0.0.0.0)",
    )
    group.add_argument(
        "--grpc_channel_arguments",
        default="",
        help="gRPC server arguments, comma separated key=value "
        "(e.g. grpc.max_connection_age_ms=30000)",
    )
    group.add_argument(
        "--rest_api_cors_origins",
        default="",
        help="origins allowed to call the REST API from a browser, comma separated ('*' for any)",
    )
    group.add_argument(
        "--monitoring_config_file",
        default=None,
        help="TF Serving MonitoringConfig text file: prometheus_config { enable: true "
        'path: "/monitoring/prometheus/metrics" } also serves the metrics at that REST path',
    )
    group.add_argument(
        "--shutdown_grace_seconds",
        type=float,
        default=10.0,
        help="on SIGTERM/SIGINT, how long in-flight requests may take to finish (default 10)",
    )


def _add_limit_flags(group: Group) -> None:
    group.add_argument(
        "--max_message_bytes",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help="largest gRPC message and REST body accepted, in bytes (default 64 MiB)",
    )
    group.add_argument(
        "--max_batch_rows",
        type=int,
        default=DEFAULT_MAX_BATCH_ROWS,
        help="most rows in one request, checked on the declared shape before anything is "
        f"allocated; more is INVALID_ARGUMENT / 400 (default {DEFAULT_MAX_BATCH_ROWS})",
    )
    group.add_argument(
        "--max_concurrent_rpcs",
        type=int,
        default=DEFAULT_MAX_CONCURRENT_RPCS,
        help="gRPC calls handled at once; more get RESOURCE_EXHAUSTED at once "
        f"(default {DEFAULT_MAX_CONCURRENT_RPCS})",
    )
    group.add_argument(
        "--rest_max_concurrent_requests",
        type=int,
        default=DEFAULT_MAX_CONCURRENT_REST,
        help="REST /v1/ requests handled at once (each may decode a JSON body); more get "
        f"429 with Retry-After at once (default {DEFAULT_MAX_CONCURRENT_REST})",
    )
    group.add_argument(
        "--max_models",
        type=int,
        default=DEFAULT_MAX_MODELS,
        help=f"most models served at once, from any source (default {DEFAULT_MAX_MODELS})",
    )


def _add_model_flags(group: Group) -> None:
    group.add_argument(
        "--model_name",
        default=None,
        help="name of the model to serve (default: $MODEL_NAME)",
    )
    group.add_argument(
        "--model_base_path",
        default=None,
        help="directory holding <version>/model.onnx (default: $MODEL_BASE_PATH, "
        "else /models/${MODEL_NAME})",
    )
    group.add_argument(
        "--model_config_file",
        default=None,
        help="TF Serving ModelServerConfig text file (model_config_list) naming several "
        "models, their version policies and version labels (instead of --model_name); "
        "relative base paths are relative to the file's folder",
    )
    group.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=0.0,
        help="how often to re-read --model_config_file: added models load before they "
        "serve, removed ones unload once idle, policies and labels change (0, the "
        "default: read once)",
    )
    group.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="how often to look for new, removed or changed versions (0 disables; default 1)",
    )
    _bool_flag(
        group,
        "--response_tensor_content",
        "answer gRPC with raw tensor_content bytes instead of typed *_val fields",
    )


def _add_reload_rpc_flags(group: Group) -> None:
    _bool_flag(
        group,
        "--allow_config_reload_rpc",
        "let gRPC clients replace the served models with ModelService."
        "HandleReloadConfigRequest (default false: PERMISSION_DENIED; TF Serving has it on, "
        "but anyone who reaches the gRPC port could then unload the model or load any path)",
    )
    group.add_argument(
        "--allowed_model_roots",
        default="",
        help="with --allow_config_reload_rpc: directories, comma separated, that reloaded "
        "models' base_path (absolute) must lie under (default: the parent directory of "
        "each model configured at start)",
    )


def _add_batching_flags(group: Group) -> None:
    _bool_flag(group, "--enable_batching", "merge concurrent requests into one runtime call")
    defaults = BatchingConfig()
    group.add_argument(
        "--max_batch_size",
        type=int,
        default=defaults.max_batch_size,
        help=f"most rows in one batch (default {defaults.max_batch_size})",
    )
    group.add_argument(
        "--batch_timeout_micros",
        type=int,
        default=defaults.batch_timeout_micros,
        help="longest wait for a batch to fill, from its first request, while another batch "
        f"runs (default {defaults.batch_timeout_micros})",
    )
    group.add_argument(
        "--max_enqueued_batches",
        type=int,
        default=defaults.max_enqueued_batches,
        help="queue bound in batches; beyond it requests get RESOURCE_EXHAUSTED / 429 "
        f"(default {defaults.max_enqueued_batches})",
    )
    group.add_argument(
        "--num_batch_threads",
        type=int,
        default=defaults.num_batch_threads,
        help="batches run in parallel (default: the CPUs of the container's quota, "
        f"{defaults.num_batch_threads})",
    )
    group.add_argument(
        "--batching_parameters_file",
        default=None,
        help="TF Serving BatchingParameters text file (e.g. max_batch_size { value: 32 }); "
        "its values override the flags above and turn batching on; allowed_batch_sizes "
        "pads each batch up to the next listed size",
    )


def _add_runtime_flags(group: Group) -> None:
    group.add_argument(
        "--execution_providers",
        default="CPUExecutionProvider",
        help="comma separated, in order of preference: CPUExecutionProvider, "
        "CUDAExecutionProvider, TensorrtExecutionProvider (or cpu, cuda, tensorrt)",
    )
    group.add_argument(
        "--intra_op_threads",
        type=int,
        default=0,
        help="threads inside one operator (0: auto: the quota's CPUs // num_batch_threads with "
        "batching, so parallel batches do not oversubscribe the cores, plus a session with "
        "every core for a batch that runs alone; every core without batching)",
    )
    group.add_argument(
        "--inter_op_threads", type=int, default=0, help="threads across operators (0: auto)"
    )
    _bool_flag(
        group,
        "--enable_model_warmup",
        "run each new version on zeros (every allowed_batch_sizes entry, else batch 1) "
        "before it turns AVAILABLE, so no request pays for the first run (default true)",
        default=True,
    )


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_channel_arguments(text: str) -> tuple[tuple[str, int | str], ...]:
    """TF Serving's ``--grpc_channel_arguments``: ``key=value`` pairs, comma separated."""
    pairs: list[tuple[str, int | str]] = []
    for item in _split(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--grpc_channel_arguments: {item!r} is not key=value")
        value = value.strip()
        pairs.append((key.strip(), int(value) if value.lstrip("-").isdigit() else value))
    return tuple(pairs)


def config_from_args(args: argparse.Namespace, environ: dict[str, str]) -> ServerConfig:
    """Build and validate the configuration; ValueError says what is wrong, naming flags."""
    try:
        return ServerConfig(
            models=_models(args, environ),
            host=args.host,
            port=args.port,
            rest_api_port=args.rest_api_port,
            poll_wait_seconds=args.file_system_poll_wait_seconds,
            batching=_batching(args),
            runtime=_runtime(args),
            grpc_channel_arguments=parse_channel_arguments(args.grpc_channel_arguments),
            shutdown_grace_seconds=args.shutdown_grace_seconds,
            response_tensor_content=args.response_tensor_content,
            max_message_bytes=args.max_message_bytes,
            cors_origins=_split(args.rest_api_cors_origins),
            prometheus_path=_prometheus_path(args),
            model_config_file=Path(args.model_config_file) if args.model_config_file else None,
            config_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
            allow_config_reload_rpc=args.allow_config_reload_rpc,
            allowed_model_roots=tuple(Path(root) for root in _split(args.allowed_model_roots)),
            max_models=args.max_models,
            max_batch_rows=args.max_batch_rows,
            max_concurrent_rpcs=args.max_concurrent_rpcs,
            max_concurrent_rest=args.rest_max_concurrent_requests,
        )
    except InvalidSetting as error:
        raise ValueError(error.naming(flag_for)) from None


def _models(args: argparse.Namespace, environ: dict[str, str]) -> tuple[ModelConfig, ...]:
    """The models of --model_config_file, else the one --model_name (or $MODEL_NAME) names."""
    if args.model_config_file:
        if args.model_base_path:
            raise ValueError("pass either --model_config_file or --model_base_path, not both")
        path = Path(args.model_config_file)
        return _naming_flag("--model_config_file", lambda: read_model_config_file(path))
    name = args.model_name or environ.get("MODEL_NAME", "")
    if not name:
        raise ValueError(
            "no model to serve: pass --model_name and --model_base_path "
            "(or set MODEL_NAME), or --model_config_file"
        )
    base = args.model_base_path or environ.get("MODEL_BASE_PATH") or f"/models/{name}"
    return (ModelConfig(name=name, base_path=Path(base)),)


def _batching(args: argparse.Namespace) -> BatchingConfig | None:
    """The batching flags, overridden by --batching_parameters_file; None when off."""
    if not (args.enable_batching or args.batching_parameters_file):
        return None
    flags = BatchingConfig(
        max_batch_size=args.max_batch_size,
        batch_timeout_micros=args.batch_timeout_micros,
        max_enqueued_batches=args.max_enqueued_batches,
        num_batch_threads=args.num_batch_threads,
    )
    if not args.batching_parameters_file:
        return flags
    path = Path(args.batching_parameters_file)
    return _naming_flag(
        "--batching_parameters_file", lambda: read_batching_parameters_file(path, flags)
    )


def _runtime(args: argparse.Namespace) -> RuntimeConfig:
    return RuntimeConfig(
        execution_providers=_split(args.execution_providers) or ("CPUExecutionProvider",),
        intra_op_threads=args.intra_op_threads,
        inter_op_threads=args.inter_op_threads,
        warmup_batch_sizes=(1,) if args.enable_model_warmup else (),
    )


def _prometheus_path(args: argparse.Namespace) -> str | None:
    if not args.monitoring_config_file:
        return None
    path = Path(args.monitoring_config_file)
    return _naming_flag("--monitoring_config_file", lambda: read_monitoring_config_file(path))


def _naming_flag(flag: str, read: Callable[[], T]) -> T:
    """``read()``, its ValueError said as a problem with ``flag``'s file."""
    try:
        return read()
    except ValueError as error:
        raise ValueError(f"{flag}: {error}") from None


def run(args: argparse.Namespace) -> int:
    try:
        # A format from the environment is not checked by argparse: here it is.
        logs.configure(args.log_format, args.log_level)
        config = config_from_args(args, dict(os.environ))
    except ValueError as error:
        print(f"clothing model-server: error: {error}", file=sys.stderr)
        return 2
    tracing.setup("clothing-model-server")
    from clothing.model_server.backend import BackendError
    from clothing.model_server.server import ModelServer

    server = ModelServer(config)
    try:
        asyncio.run(server.serve_until_signal())
    except BackendError as error:
        print(f"clothing model-server: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"clothing model-server: error: {error}", file=sys.stderr)
        return 1
    return 0
