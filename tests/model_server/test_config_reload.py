"""A re-read --model_config_file: models come and go while the others keep serving."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import httpx
import pytest

from clothing.model_server.config import ModelConfig, ServerConfig
from clothing.model_server.tf_serving_config import read_model_config_file
from clothing.proto.tensorflow_serving.apis import model_management_pb2
from tests.fixtures import build_test_model
from tests.model_server.conftest import MODEL, Running, ServerFactory
from tests.model_server.test_grpc import images, request_for
from tests.model_server.test_reload import wait_for


def _config(*entries: tuple[str, str, str]) -> str:
    """``model_config_list`` text for (name, base path, extra fields) entries."""
    blocks = "".join(
        f'config {{ name: "{name}" base_path: "{base}" model_platform: "onnx" {extra} }}\n'
        for name, base, extra in entries
    )
    return f"model_config_list {{\n{blocks}}}\n"


async def _answers(running: Running, model: str, expected: int) -> bool:
    """Whether ``model`` is served and answers ``expected`` (False while it is not loaded)."""
    try:
        return await _predict(running, model) == expected
    except grpc.aio.AioRpcError:
        return False


async def _predict(running: Running, model: str, label: str = "") -> int:
    request = request_for(images(1))
    request.model_spec.name = model
    if label:
        request.model_spec.version_label = label
    response = await running.predictions.Predict(request)
    return int(response.model_spec.version.value)


async def test_models_are_added_changed_and_removed_without_a_restart(
    serve: ServerFactory, tmp_path: Path
) -> None:
    for name, versions in (("shirts", (1, 2)), ("shoes", (5,))):
        for version in versions:
            build_test_model(tmp_path / name / str(version))
    config_file = tmp_path / "models.config"
    config_file.write_text(_config((MODEL, "shirts", "")))
    models = read_model_config_file(config_file)
    async with (
        serve(models, model_config_file=config_file, config_poll_wait_seconds=0.1) as running,
        httpx.AsyncClient(base_url=running.rest_url) as client,
    ):
        assert await _predict(running, MODEL) == 2

        config_file.write_text(_config((MODEL, "shirts", ""), ("shoes", "shoes", "")))

        await wait_for(lambda: _answers(running, "shoes", 5))
        assert (await client.get("/readyz")).status_code == 200
        assert await _predict(running, MODEL) == 2  # the model that stayed kept serving

        pinned = "model_version_policy { specific { versions: 1 versions: 2 } } "
        pinned += 'version_labels { key: "stable" value: 1 }'
        config_file.write_text(_config((MODEL, "shirts", pinned)))

        async def shoes_gone() -> bool:
            try:
                await _predict(running, "shoes")
            except grpc.aio.AioRpcError as error:
                return error.code() == grpc.StatusCode.NOT_FOUND
            return False

        await wait_for(shoes_gone)
        await wait_for(lambda: _is_served(running, "stable", 1))
        assert await _predict(running, MODEL) == 2
        metrics = (await client.get("/metrics")).text
        assert 'model_server_available_versions{model="shoes"} 0.0' in metrics
        assert f'model_server_available_versions{{model="{MODEL}"}} 2.0' in metrics


async def _is_served(running: Running, label: str, version: int) -> bool:
    try:
        return await _predict(running, MODEL, label) == version
    except grpc.aio.AioRpcError:
        return False


async def test_a_broken_config_file_changes_nothing(
    serve: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The poller reads the broken file, says so, keeps serving, and polls on."""
    build_test_model(tmp_path / "shirts" / "1")
    build_test_model(tmp_path / "shoes" / "5")
    config_file = tmp_path / "models.config"
    config_file.write_text(_config((MODEL, "shirts", "")))
    models = read_model_config_file(config_file)
    watched = {"model_config_file": config_file, "config_poll_wait_seconds": 0.05}
    caplog.set_level(logging.ERROR, logger="clothing.model_server")
    async with serve(models, **watched) as running:
        config_file.write_text("model_config_list { config { name: ")

        async def broken_file_read() -> bool:
            return any("kept the current models" in r.getMessage() for r in caplog.records)

        await wait_for(broken_file_read)
        assert await _predict(running, MODEL) == 1
        assert set(running.server.repository.models) == {MODEL}

        # Still polling: a repaired file takes effect.
        config_file.write_text(_config((MODEL, "shirts", ""), ("shoes", "shoes", "")))

        await wait_for(lambda: _answers(running, "shoes", 5))
        assert await _predict(running, MODEL) == 1


def test_polling_needs_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs model_config_file"):
        ServerConfig(models=(ModelConfig(MODEL, tmp_path),), config_poll_wait_seconds=1.0)


def _reload_request(*entries: tuple[str, Path]) -> model_management_pb2.ReloadConfigRequest:
    request = model_management_pb2.ReloadConfigRequest()
    for name, base in entries:
        request.config.model_config_list.config.add(
            name=name, base_path=str(base), model_platform="onnx"
        )
    return request


async def test_the_reload_config_rpc_swaps_the_served_models(
    serve: ServerFactory, tmp_path: Path
) -> None:
    for name, version in (("shirts", 1), ("shoes", 5)):
        build_test_model(tmp_path / name / str(version))
    allowed = {"allow_config_reload_rpc": True}
    async with serve((ModelConfig(MODEL, tmp_path / "shirts"),), **allowed) as running:
        request = _reload_request((MODEL, tmp_path / "shirts"), ("shoes", tmp_path / "shoes"))
        entry = request.config.model_config_list.config[1]
        entry.model_version_policy.specific.versions.append(5)
        entry.version_labels["stable"] = 5
        response = await running.models.HandleReloadConfigRequest(request)
        assert response.status.error_code == 0
        assert await _predict(running, "shoes", "stable") == 5
        assert await _predict(running, MODEL) == 1

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await running.models.HandleReloadConfigRequest(
                _reload_request(("empty", tmp_path / "nothing-here"))
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "model empty has no available version" in str(refused.value.details())

        custom = model_management_pb2.ReloadConfigRequest()
        custom.config.custom_model_config.type_url = "type.example/whatever"
        # Read as a --model_config_file is: a platform not served here, a relative base
        # path (no file to be relative to) and a repeated name are refused, as in TF Serving.
        pytorch = _reload_request((MODEL, tmp_path / "shirts"))
        pytorch.config.model_config_list.config[0].model_platform = "pytorch"
        relative = _reload_request((MODEL, Path("shirts")))
        twice = _reload_request((MODEL, tmp_path / "shirts"), (MODEL, tmp_path / "shoes"))
        for bad, problem in (
            (custom, "custom_model_config"),
            (_reload_request(), "needs a model_config_list"),
            (_reload_request(("a/b", tmp_path)), "invalid model name"),
            (pytorch, "model_platform 'pytorch' is not served here"),
            (relative, "base_path must be an absolute path"),
            (twice, "listed more than once"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as invalid:
                await running.models.HandleReloadConfigRequest(bad)
            assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert problem in str(invalid.value.details())


async def test_the_reload_config_rpc_is_off_by_default(
    serve: ServerFactory, base_path: Path
) -> None:
    async with serve((ModelConfig(MODEL, base_path),)) as running:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await running.models.HandleReloadConfigRequest(_reload_request(("x", base_path)))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert await _predict(running, MODEL) == 1  # nothing changed
