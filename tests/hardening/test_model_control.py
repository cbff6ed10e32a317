"""HandleReloadConfigRequest against a real model-server process: off unless turned on,
and when on, confined to the allowed roots and a bounded number of models."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from clothing.proto.tensorflow_serving.apis import model_service_pb2_grpc
from tests.fixtures import ModelServerProcess, build_test_model, run_model_server

from .helpers import MODEL, images, predict_request, prediction_stub
from .payloads import many_models_request, reload_request


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("control")
    build_test_model(root / "models" / MODEL / "1")
    build_test_model(root / "models" / "shoes" / "1")
    build_test_model(root / "elsewhere" / "secret" / "1")
    return root


def _reload(server: ModelServerProcess, request: object) -> grpc.RpcError | None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            stub.HandleReloadConfigRequest(request, timeout=30)
        except grpc.RpcError as error:
            return error
    return None


def _serves(server: ModelServerProcess) -> bool:
    with grpc.insecure_channel(server.grpc_address) as channel:
        response = prediction_stub(channel).Predict(predict_request(images(1)), timeout=10)
    return response.model_spec.name == MODEL


@pytest.fixture(scope="module")
def default_server(models_dir: Path) -> Iterator[ModelServerProcess]:
    with run_model_server(models_dir / "models" / MODEL) as running:
        yield running


def test_reload_rpc_is_off_by_default(default_server: ModelServerProcess) -> None:
    # One call with another model list would unload the served model.
    error = _reload(default_server, reload_request(("other", "/")))
    assert error is not None
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
    assert "--allow_config_reload_rpc" in (error.details() or "")
    assert _serves(default_server)


@pytest.fixture(scope="module")
def reloadable(models_dir: Path) -> Iterator[ModelServerProcess]:
    args = ["--allow_config_reload_rpc", "--max_models=4"]
    with run_model_server(models_dir / "models" / MODEL, extra_args=args) as running:
        yield running


@pytest.mark.parametrize(
    "base",
    ["/", "elsewhere/secret", "models/../elsewhere/secret"],
    ids=["filesystem-root", "outside-root", "dot-dot-escape"],
)
def test_reload_outside_the_model_roots_is_refused(
    reloadable: ModelServerProcess, models_dir: Path, base: str
) -> None:
    path = Path(base) if base.startswith("/") else models_dir / base
    error = _reload(reloadable, reload_request((MODEL, models_dir / "models" / MODEL), ("x", path)))
    assert error is not None
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
    assert str(path) not in (error.details() or "")
    assert _serves(reloadable)


def test_reload_within_the_roots_still_works(
    reloadable: ModelServerProcess, models_dir: Path
) -> None:
    models = models_dir / "models"
    assert (
        _reload(reloadable, reload_request((MODEL, models / MODEL), ("shoes", models / "shoes")))
        is None
    )
    assert _serves(reloadable)


def test_a_flood_of_model_names_is_refused_before_anything_loads(
    reloadable: ModelServerProcess, models_dir: Path
) -> None:
    started = time.monotonic()
    error = _reload(reloadable, many_models_request(100_000, models_dir / "models" / MODEL))
    elapsed = time.monotonic() - started
    assert error is not None
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "--max_models" in (error.details() or "")
    assert elapsed < 10, elapsed
    print(f"100,000 names: {error.code().name} in {elapsed * 1000:.0f} ms")
    ready = httpx.get(f"{reloadable.rest_url}/readyz", timeout=10)
    assert ready.status_code == 200
    assert "m99999" not in httpx.get(f"{reloadable.rest_url}/metrics", timeout=10).text
    assert _serves(reloadable)
