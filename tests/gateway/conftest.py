"""Fixtures: a real model server, an image server, and the gateway app in-process."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from clothing.gateway.app import create_app
from clothing.gateway.settings import GatewaySettings
from clothing.processes import free_port, start_logged, stop_process, wait_ready
from tests.fixtures import (
    EVERY_PORT,
    ModelServerProcess,
    build_test_model,
    cli_command,
    run_model_server,
)
from tests.hardening import bombs
from tests.images import gif_two_frames, jpeg, jpeg_rotated_180, png_rgba, webp

from . import helpers
from .helpers import ImageServer, Route


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("models") / "clothing-model"
    build_test_model(base / "1")
    return base


@pytest.fixture(scope="session")
def session_model_server(model_dir: Path) -> Iterator[ModelServerProcess]:
    with run_model_server(model_dir) as server:
        yield server


def image_routes() -> dict[str, Route]:
    return {
        "/red.jpg": Route(jpeg((220, 20, 20)), headers={"Content-Type": "text/html"}),
        "/green.png": Route(png_rgba()),
        "/blue.webp": Route(webp()),
        "/frames.gif": Route(gif_two_frames()),
        "/rotated.jpg": Route(jpeg_rotated_180()),
        "/text": Route(b"<html>not an image</html>", headers={"Content-Type": "image/jpeg"}),
        "/truncated.jpg": Route(jpeg(size=(300, 200))[:1500]),
        "/bomb.png": Route(bombs.png(30000, 30000)),
        "/huge": Route(b"\xff" * (2 * 1024 * 1024)),
        "/slow.jpg": Route(jpeg(), trickle_seconds=1.0),
        "/to-red": Route(status=302, headers={"Location": "/red.jpg"}),
        "/to-metadata": Route(status=302, headers={"Location": "http://169.254.169.254/"}),
    }


@pytest.fixture(scope="session")
def image_server() -> Iterator[ImageServer]:
    with helpers.serve_images(image_routes()) as server:
        yield server


@contextlib.asynccontextmanager
async def gateway_client(
    settings: GatewaySettings, **kwargs: object
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app, lifespan included, behind an in-process httpx client."""
    app = create_app(settings, **kwargs)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


def settings_for(server: ModelServerProcess, **overrides: object) -> GatewaySettings:
    values: dict[str, object] = {
        "tf_serving_host": server.grpc_address,
        "allow_hosts": ("127.0.0.1",),
        "fetch_ports": EVERY_PORT,  # the image servers listen on random ports
        "max_image_bytes": 1024 * 1024,
        "fetch_timeout": 2.0,
        "ready_cache_seconds": 0.0,
        "metrics_port": 0,  # the tests read /metrics from the app itself
    }
    values.update(overrides)
    return GatewaySettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def gateway(
    session_model_server: ModelServerProcess, image_server: ImageServer
) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(settings_for(session_model_server)) as client:
        yield client


@dataclass
class UpProcess:
    process: subprocess.Popen[bytes]
    gateway_url: str
    rest_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def run_up(model_base_path: Path, log_dir: Path, *extra: str) -> Iterator[UpProcess]:
    """``clothing up`` as a subprocess on free ports; waits until the gateway is ready."""
    grpc_port, rest_port, gateway_port = free_port(), free_port(), free_port()
    command = cli_command(
        "up",
        f"--model-base-path={model_base_path}",
        f"--grpc-port={grpc_port}",
        f"--rest-port={rest_port}",
        f"--gateway-port={gateway_port}",
        *extra,
    )
    log_path = log_dir / f"up-{gateway_port}.log"
    process = start_logged(command, log_path)
    up = UpProcess(
        process, f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{rest_port}", log_path
    )
    try:
        wait_ready(f"{up.gateway_url}/readyz", process, 60.0)
        yield up
    finally:
        stop_process(process)
