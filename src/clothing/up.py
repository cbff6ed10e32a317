"""Start the model server and the gateway together, without Docker.

Both run as child processes on this machine: the model server on the bundled
model's int8 copy (``models/clothing-model-int8``, the copy for CPUs; the float32
original in ``models/clothing-model`` is for GPUs) and the gateway in front of it.
Both copies are served under the same name, so clients see no difference. Once both
answer ``/readyz`` the web page's address is printed. Ctrl-C or SIGTERM stops
the gateway first, then the model server, each with a grace period; if either
child exits on its own, the other is stopped too.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from clothing.processes import poll_until_ok, stop_process
from clothing.serving_layout import (
    CPU_PRECISION,
    PRECISION_BASE_PATHS,
    SHIPPED_MODEL_SERVER_FLAGS,
    versions_on_disk,
)

GRACE_SECONDS = 15.0
CPU_MODEL_BASE_PATH = PRECISION_BASE_PATHS[CPU_PRECISION]
FALLBACK_MODEL_BASE_PATH = PRECISION_BASE_PATHS["float32"]


class _Stop(Exception):
    """Raised by the signal handler to leave the wait loop."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-base-path",
        default=os.environ.get("MODEL_BASE_PATH"),
        help="model repository (VERSION/model.onnx) (env MODEL_BASE_PATH; "
        f"default: {CPU_MODEL_BASE_PATH}, the int8 copy for CPUs, or "
        f"{FALLBACK_MODEL_BASE_PATH} while there is none)",
    )
    parser.add_argument(
        "--model-name",
        default=os.environ.get("MODEL_NAME", "clothing-model"),
        help="model name on the model server (env MODEL_NAME; default: clothing-model)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface both servers listen on (default: 127.0.0.1)"
    )
    parser.add_argument("--grpc-port", type=int, default=8500, help="model server gRPC port")
    parser.add_argument("--rest-port", type=int, default=8501, help="model server REST port")
    parser.add_argument("--gateway-port", type=int, default=9696, help="gateway HTTP port")
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for both servers to be ready (default: 60)",
    )
    parser.add_argument(
        "--allow-hosts",
        default=os.environ.get("GATEWAY_ALLOW_HOSTS", ""),
        help="passed to the gateway: hosts or networks it may fetch from although private",
    )


def default_model_base_path() -> str:
    """The int8 copy for CPUs; the float32 original until someone has made that copy."""
    if versions_on_disk(Path(CPU_MODEL_BASE_PATH)):
        return CPU_MODEL_BASE_PATH
    print(
        f"clothing up: no int8 copy at {CPU_MODEL_BASE_PATH} (`clothing quantize` makes it); "
        f"serving the float32 model at {FALLBACK_MODEL_BASE_PATH}",
        flush=True,
    )
    return FALLBACK_MODEL_BASE_PATH


def _children(args: argparse.Namespace) -> list[tuple[str, list[str], str]]:
    """(name, command, readiness URL) for the model server and then the gateway."""
    local = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host  # noqa: S104
    cli = [sys.executable, "-m", "clothing.cli"]
    model_server = [
        *cli,
        "model-server",
        f"--port={args.grpc_port}",
        f"--rest_api_port={args.rest_port}",
        f"--host={args.host}",
        f"--model_name={args.model_name}",
        f"--model_base_path={Path(args.model_base_path).resolve()}",
        *SHIPPED_MODEL_SERVER_FLAGS,
    ]
    gateway = [
        *cli,
        "gateway",
        f"--host={args.host}",
        f"--port={args.gateway_port}",
        # One port for a local run: /metrics beside the API.
        "--metrics-port=0",
        f"--tf-serving-host={local}:{args.grpc_port}",
        f"--model-name={args.model_name}",
    ]
    if args.allow_hosts:
        gateway.append(f"--allow-hosts={args.allow_hosts}")
    return [
        ("model server", model_server, f"http://{local}:{args.rest_port}/readyz"),
        ("gateway", gateway, f"http://{local}:{args.gateway_port}/readyz"),
    ]


def _stop(processes: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    # The gateway goes first so it stops taking requests before its backend leaves.
    for name, process in reversed(processes):
        stop_process(process, GRACE_SECONDS, kill=_announced_kill(name, process))


def _announced_kill(name: str, process: subprocess.Popen[bytes]) -> Callable[[], None]:
    def kill() -> None:
        print(f"{name} did not stop in {GRACE_SECONDS:g} s; killing it", flush=True)
        process.kill()

    return kill


def run(args: argparse.Namespace) -> int:
    if args.model_base_path is None:
        args.model_base_path = default_model_base_path()
    model_path = Path(args.model_base_path)
    if not versions_on_disk(model_path):
        print(
            f"clothing up: no model at {model_path} (expected {model_path}/<version>/model.onnx); "
            "train and export one (and `clothing quantize` it for CPUs), "
            "or pass --model-base-path",
            file=sys.stderr,
        )
        return 2

    received: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        raise _Stop(received[-1])

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        deadline = time.monotonic() + args.ready_timeout
        for name, command, ready_url in _children(args):
            # A session of its own: Ctrl-C reaches only us, and we stop children in order.
            process = subprocess.Popen(command, start_new_session=True)
            processes.append((name, process))
            failure = poll_until_ok(
                ready_url, process, timeout=max(0.0, deadline - time.monotonic()), interval=0.2
            )
            if failure is not None:
                print(f"clothing up: the {name} did not become ready: {failure}", file=sys.stderr)
                return 1
        local = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host  # noqa: S104
        print(f"\nReady: open http://{local}:{args.gateway_port}/  (Ctrl-C stops)\n", flush=True)
        while True:
            # A raise that lands in a garbage-collection callback is dropped; this is not.
            if received:
                raise _Stop(received[0])
            for name, process in processes:
                if process.poll() is not None:
                    print(f"clothing up: the {name} exited ({process.returncode})", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except _Stop as reason:
        print(f"clothing up: {reason}, stopping", flush=True)
        return 0
    finally:
        # A second Ctrl-C must not cut the orderly stop short (it is bounded anyway).
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)
        _stop(processes)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
