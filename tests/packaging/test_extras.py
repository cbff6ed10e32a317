"""Each tier installs and starts from its own extra alone (README, "Install only one tier").

Every other test runs in one virtualenv that holds every extra, where a module that
imports another tier's package works by accident; here each extra gets a fresh
virtualenv of its own and its command runs there for real.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clothing.processes import free_port, stop_process, wait_ready

from . import venvs

pytestmark = pytest.mark.slow

BUNDLED_MODEL = venvs.ROOT / "models" / "clothing-model"
# What each tier must not drag in: the other tiers' heavy or unneeded packages.
FORBIDDEN = {
    "server": {"torch", "httpx", "python-multipart"},
    # The gateway downloads images with its own GET (gateway/http_get.py).
    "gateway": {"torch", "onnxruntime", "onnx", "httpx", "httpcore"},
    "train": {"httpx", "fastapi", "uvicorn"},
}


@pytest.fixture(scope="session")
def project_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return venvs.build_project_wheel(tmp_path_factory.mktemp("project-wheel"))


@pytest.fixture(scope="session")
def wheelhouse(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Kept between runs in pytest's cache (a fresh one per run with -p no:cacheprovider)."""
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return tmp_path_factory.mktemp("extras-wheelhouse")
    return Path(cache.mkdir("extras-wheelhouse"))


def fresh_install(extra: str, tmp_path: Path, wheel: Path, wheelhouse: Path) -> Path:
    bin_dir = venvs.create(tmp_path / f"venv-{extra}", wheel, extra, wheelhouse)
    unexpected = FORBIDDEN[extra] & venvs.installed(bin_dir)
    assert not unexpected, f"the {extra} extra installs {sorted(unexpected)}"
    return bin_dir


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started by a test; stopped at its end, their logs shown if it failed."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        stop_process(process)


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, cwd=log.parent, env=venvs.clean_env()
        )


def test_server_extra_alone_serves_the_bundled_model(
    tmp_path: Path, project_wheel: Path, wheelhouse: Path, logged: list[subprocess.Popen[bytes]]
) -> None:
    bin_dir = fresh_install("server", tmp_path, project_wheel, wheelhouse)
    grpc_port, rest_port = free_port(), free_port()
    log = tmp_path / "model-server.log"
    process = start(
        [
            str(bin_dir / "clothing"),
            "model-server",
            "--host=127.0.0.1",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            "--model_name=clothing-model",
            f"--model_base_path={BUNDLED_MODEL}",
        ],
        log,
    )
    logged.append(process)
    try:
        wait_ready(f"http://127.0.0.1:{rest_port}/readyz", process, 120.0)
    except Exception:
        pytest.fail(f"the model server did not become ready:\n{log.read_text()}")
    status = httpx.get(f"http://127.0.0.1:{rest_port}/v1/models/clothing-model").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"


def test_gateway_extra_alone_serves(
    tmp_path: Path, project_wheel: Path, wheelhouse: Path, logged: list[subprocess.Popen[bytes]]
) -> None:
    bin_dir = fresh_install("gateway", tmp_path, project_wheel, wheelhouse)
    port = free_port()
    log = tmp_path / "gateway.log"
    # No model server behind it: the gateway lives (/healthz) and says it is not ready.
    process = start(
        [
            str(bin_dir / "clothing"),
            "gateway",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--tf-serving-host=127.0.0.1:{free_port()}",
        ],
        log,
    )
    logged.append(process)
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", process, 120.0)
    except Exception:
        pytest.fail(f"the gateway did not start:\n{log.read_text()}")
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 503
    page = httpx.get(f"http://127.0.0.1:{port}/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]


def test_train_extra_alone_trains_exports_and_evaluates(
    tmp_path: Path, project_wheel: Path, wheelhouse: Path, tiny_dataset: Path
) -> None:
    clothing = str(fresh_install("train", tmp_path, project_wheel, wheelhouse) / "clothing")

    def run(*args: str) -> str:
        result = subprocess.run(
            [clothing, *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
            env=venvs.clean_env(),
        )
        assert result.returncode == 0, f"clothing {args[0]}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    assert "--data" in run("train", "--help")
    run(
        "train",
        f"--data={tiny_dataset}",
        f"--output={tmp_path / 'run'}",
        "--image-size=64",
        "--epochs=1",
        "--batch-size=8",
        "--augment-views=1",
        "--trainable-blocks=2",
        "--full-epochs=0",
        "--frozen-blocks=4",
        "--no-progress",
    )
    model_dir = tmp_path / "models" / "clothing-model"
    run(
        "export",
        f"--checkpoint={tmp_path / 'run' / 'checkpoint.pt'}",
        f"--model-dir={model_dir}",
        f"--check-data={tiny_dataset / 'validation'}",
    )
    run("evaluate", f"--data={tiny_dataset}", f"--model={model_dir}", f"--output={tmp_path}")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["top1_accuracy"] <= 1.0
    assert metrics["images"] == sum(1 for _ in (tiny_dataset / "validation").rglob("*.jpg"))
