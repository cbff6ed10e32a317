"""How each measured system is started: commands, ports, readiness URLs.

Every system listens on 127.0.0.1 only, on free ephemeral ports, and is stopped
(SIGTERM, then SIGKILL of its process group) when its ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from clothing.benchmarks.devices import DEVICE_PROVIDERS
from clothing.benchmarks.photo_ceiling import NAME as PHOTO_CEILING
from clothing.benchmarks.processes import Service, python_command, run_service
from clothing.processes import LOOPBACK, free_port
from clothing.serving_layout import SHIPPED_MODEL_SERVER_FLAGS

LEVEL1_SYSTEMS = ("model-server", "model-server+batching")
# "ours" is the gateway in front of the model server as shipped (SHIPPED_MODEL_SERVER_FLAGS);
# "ours-no-batching" the same without batching (as shipped before); "photo-ceiling" the
# same photo work in the benchmark's own process (see photo_ceiling).
OURS = "ours"
OURS_SERVER_FLAGS = {OURS: SHIPPED_MODEL_SERVER_FLAGS, "ours-no-batching": ()}
LEVEL2_SYSTEMS = (*OURS_SERVER_FLAGS, "baseline", "litserve", PHOTO_CEILING)
ALL_SYSTEMS = LEVEL1_SYSTEMS + LEVEL2_SYSTEMS
BASELINE = "baseline"
FRAMEWORK = "litserve"
APPS_MODULES = {"baseline": "bench.baseline_app", "litserve": "bench.litserve_app"}


class AppsNotFoundError(FileNotFoundError):
    """``bench/baseline_app.py`` is not found: run from the repository root."""


def find_repo_root(start: Path | None = None) -> Path:
    """The directory holding ``bench/baseline_app.py`` (the apps are not installed)."""
    import clothing

    candidates = [start or Path.cwd()]
    candidates.append(Path(clothing.__file__).resolve().parent)
    for candidate in candidates:
        for directory in (candidate.resolve(), *candidate.resolve().parents):
            if (directory / "bench" / "baseline_app.py").is_file():
                return directory
    raise AppsNotFoundError(
        "bench/baseline_app.py not found: run `clothing bench` from the repository root"
    )


@dataclass(frozen=True)
class ModelServerEndpoint:
    grpc_address: str
    rest_url: str
    service: Service


@dataclass(frozen=True)
class HttpEndpoint:
    """A system's ``POST /predict`` URL and the process serving it."""

    predict_url: str
    service: Service


@dataclass(frozen=True)
class ServingOptions:
    """What every system is started with."""

    model_base_path: Path
    model_name: str
    device: str
    repo_root: Path
    batching_parameters_file: Path | None = None
    ready_timeout: float = 120.0


@contextlib.contextmanager
def model_server(
    options: ServingOptions, *, batching: bool, flags: Sequence[str] = ()
) -> Iterator[ModelServerEndpoint]:
    grpc_port, rest_port = free_port(), free_port()
    command = python_command(
        "-m",
        "clothing.cli",
        "model-server",
        f"--host={LOOPBACK}",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_name={options.model_name}",
        f"--model_base_path={options.model_base_path}",
        # No per-request access line, as for the gateway below and the other systems.
        "--log_level=WARNING",
    )
    if batching:
        command.append("--enable_batching")
        if options.batching_parameters_file is not None:
            command.append(f"--batching_parameters_file={options.batching_parameters_file}")
    if options.device != "cpu":
        providers = ",".join(DEVICE_PROVIDERS[options.device])
        command.append(f"--execution_providers={providers}")
    command += flags
    rest_url = f"http://{LOOPBACK}:{rest_port}"
    name = "model-server+batching" if batching or "--enable_batching" in flags else "model-server"
    with run_service(
        name, command, ready_url=f"{rest_url}/readyz", ready_timeout=options.ready_timeout
    ) as service:
        yield ModelServerEndpoint(f"{LOOPBACK}:{grpc_port}", rest_url, service)


@contextlib.contextmanager
def gateway(options: ServingOptions, upstream: ModelServerEndpoint) -> Iterator[HttpEndpoint]:
    """Our gateway in front of ``upstream``."""
    port = free_port()
    command = python_command(
        "-m",
        "clothing.cli",
        "gateway",
        f"--host={LOOPBACK}",
        f"--port={port}",
        "--metrics-port=0",
        f"--tf-serving-host={upstream.grpc_address}",
        f"--model-name={options.model_name}",
        # The local image server lives on loopback, which the gateway refuses by default.
        f"--allow-hosts={LOOPBACK}",
        "--fetch-ports=1-65535",  # the image server's port is picked later
        # The other systems have no deadline; a 5 s one would turn queueing into errors.
        "--grpc-deadline=120",
        # The load generator is one client on purpose: no per-client rate limit.
        "--rate-limit=0",
        # The baseline and LitServe run without a per-request access log; so does ours here.
        "--log-level=warning",
    )
    base = f"http://{LOOPBACK}:{port}"
    with run_service(
        "gateway", command, ready_url=f"{base}/readyz", ready_timeout=options.ready_timeout
    ) as service:
        yield HttpEndpoint(f"{base}/predict", service)


@contextlib.contextmanager
def python_app(options: ServingOptions, system: str) -> Iterator[HttpEndpoint]:
    """The baseline or LitServe app from ``bench/``."""
    port = free_port()
    command = python_command(
        "-m",
        APPS_MODULES[system],
        f"--host={LOOPBACK}",
        f"--port={port}",
        f"--model-base-path={options.model_base_path}",
        f"--device={options.device}",
    )
    base = f"http://{LOOPBACK}:{port}"
    health = "/health" if system == "litserve" else "/healthz"
    with run_service(
        system,
        command,
        ready_url=f"{base}{health}",
        env={"PYTHONPATH": _with_repo_root(options.repo_root)},
        cwd=options.repo_root,
        ready_timeout=options.ready_timeout,
    ) as service:
        yield HttpEndpoint(f"{base}/predict", service)


@contextlib.contextmanager
def image_server(directory: Path, first_name: str) -> Iterator[str]:
    """A static file server on loopback (see :mod:`.image_server`); yields its base URL."""
    port = free_port()
    command = python_command("-m", "clothing.benchmarks.image_server", str(port), str(directory))
    base = f"http://{LOOPBACK}:{port}"
    with run_service("image-server", command, ready_url=f"{base}/{first_name}"):
        yield base


def check_systems(names: Sequence[str]) -> tuple[str, ...]:
    unknown = [name for name in names if name not in ALL_SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}; choose from {', '.join(ALL_SYSTEMS)}")
    return tuple(names)


def _with_repo_root(repo_root: Path) -> str:
    """PYTHONPATH with the repository first (the apps under bench/), keeping the caller's."""
    inherited = os.environ.get("PYTHONPATH")
    return os.pathsep.join([str(repo_root), *([inherited] if inherited else [])])
