"""PredictionService and ModelService over a real grpc.aio server on loopback."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import struct_pb2

from clothing import tensors
from clothing.model_server.config import ModelConfig, VersionPolicy
from clothing.proto.tensorflow.core.framework import types_pb2
from clothing.proto.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)
from tests.fixtures import build_test_model, reference_probabilities
from tests.model_server.conftest import MODEL, Running, ServerFactory


def images(count: int, seed: int = 1, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def request_for(batch: np.ndarray, **spec: object) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = str(spec.get("name", MODEL))
    if "version" in spec:
        request.model_spec.version.value = int(spec["version"])  # type: ignore[call-overload]
    if "label" in spec:
        request.model_spec.version_label = str(spec["label"])
    if "signature" in spec:
        request.model_spec.signature_name = str(spec["signature"])
    request.inputs["image"].CopyFrom(tensors.from_numpy(batch))
    return request


async def assert_still_serves(running: Running) -> None:
    batch = images(2, seed=99)
    response = await running.predictions.Predict(request_for(batch))
    got = np.asarray(response.outputs["probabilities"].float_val).reshape(2, 10)
    np.testing.assert_allclose(got, reference_probabilities(batch), rtol=1e-5, atol=1e-6)


async def test_predict_answers_in_typed_fields_like_tf_serving(
    serve: ServerFactory, base_path: Path
) -> None:
    async with serve((ModelConfig(MODEL, base_path),)) as running:
        batch = images(3)
        response = await running.predictions.Predict(request_for(batch))
        output = response.outputs["probabilities"]
        assert output.dtype == types_pb2.DT_FLOAT
        assert [d.size for d in output.tensor_shape.dim] == [3, 10]
        assert not output.tensor_content
        got = np.asarray(output.float_val, dtype=np.float32).reshape(3, 10)
        np.testing.assert_allclose(got, reference_probabilities(batch), rtol=1e-5, atol=1e-6)
        assert response.model_spec.name == MODEL
        assert response.model_spec.version.value == 1
        assert response.model_spec.signature_name == "serving_default"


async def test_typed_input_values_and_tensor_content_answers(
    serve: ServerFactory, base_path: Path
) -> None:
    async with serve((ModelConfig(MODEL, base_path),), response_tensor_content=True) as running:
        batch = images(1, seed=5)
        request = request_for(batch)
        request.inputs["image"].CopyFrom(tensors.from_numpy(batch, use_tensor_content=False))
        assert request.inputs["image"].int_val
        response = await running.predictions.Predict(request)
        output = response.outputs["probabilities"]
        assert output.tensor_content
        assert not output.float_val
        np.testing.assert_allclose(
            tensors.to_numpy(output), reference_probabilities(batch), rtol=1e-5, atol=1e-6
        )


async def test_versions_labels_and_output_filter(serve: ServerFactory, tmp_path: Path) -> None:
    base = tmp_path / "m"
    build_test_model(base / "1", seed=0)
    build_test_model(base / "2", seed=7)
    config = ModelConfig(MODEL, base, VersionPolicy("all"), {"stable": 1, "canary": 2})
    async with serve((config,)) as running:
        batch = images(2)
        newest = await running.predictions.Predict(request_for(batch))
        assert newest.model_spec.version.value == 2
        np.testing.assert_allclose(
            np.asarray(newest.outputs["probabilities"].float_val).reshape(2, 10),
            reference_probabilities(batch, seed=7),
            rtol=1e-5,
            atol=1e-6,
        )
        first = await running.predictions.Predict(request_for(batch, version=1))
        assert first.model_spec.version.value == 1
        stable = await running.predictions.Predict(request_for(batch, label="stable"))
        assert stable.model_spec.version.value == 1
        canary = await running.predictions.Predict(request_for(batch, label="canary"))
        assert canary.model_spec.version.value == 2
        filtered = request_for(batch)
        filtered.output_filter.append("probabilities")
        response = await running.predictions.Predict(filtered)
        assert list(response.outputs) == ["probabilities"]


def _bad_cases() -> list[tuple[str, predict_pb2.PredictRequest, grpc.StatusCode, str]]:
    good = images(1)
    cases = []
    cases.append(
        ("unknown model", request_for(good, name="nope"), grpc.StatusCode.NOT_FOUND, "nope")
    )
    cases.append(
        ("unknown version", request_for(good, version=42), grpc.StatusCode.NOT_FOUND, "42")
    )
    cases.append(
        ("unknown label", request_for(good, label="gold"), grpc.StatusCode.NOT_FOUND, "gold")
    )
    cases.append(
        (
            "unknown signature",
            request_for(good, signature="classify"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "serving_default",
        )
    )
    wrong_name = predict_pb2.PredictRequest()
    wrong_name.model_spec.name = MODEL
    wrong_name.inputs["pixels"].CopyFrom(tensors.from_numpy(good))
    cases.append(("wrong input name", wrong_name, grpc.StatusCode.INVALID_ARGUMENT, "pixels"))
    missing = predict_pb2.PredictRequest()
    missing.model_spec.name = MODEL
    cases.append(("missing input", missing, grpc.StatusCode.INVALID_ARGUMENT, "missing input"))
    wrong_dtype = request_for(good)
    wrong_dtype.inputs["image"].CopyFrom(tensors.from_numpy(good.astype(np.float32)))
    cases.append(("wrong dtype", wrong_dtype, grpc.StatusCode.INVALID_ARGUMENT, "uint8"))
    wrong_rank = request_for(good)
    wrong_rank.inputs["image"].CopyFrom(tensors.from_numpy(good[0]))
    cases.append(("wrong rank", wrong_rank, grpc.StatusCode.INVALID_ARGUMENT, "shape"))
    wrong_shape = request_for(images(1, size=16))
    cases.append(("wrong shape", wrong_shape, grpc.StatusCode.INVALID_ARGUMENT, "32, 32, 3"))
    bad_tensor = request_for(good)
    bad_tensor.inputs["image"].tensor_content = b"\x00" * 7
    cases.append(("bad tensor", bad_tensor, grpc.StatusCode.INVALID_ARGUMENT, "tensor_content"))
    bad_dtype = request_for(good)
    bad_dtype.inputs["image"].dtype = types_pb2.DT_STRING
    cases.append(("unsupported dtype", bad_dtype, grpc.StatusCode.INVALID_ARGUMENT, "DT_STRING"))
    bad_filter = request_for(good)
    bad_filter.output_filter.append("logits")
    cases.append(("bad output_filter", bad_filter, grpc.StatusCode.INVALID_ARGUMENT, "logits"))
    return cases


async def test_every_bad_input_gets_its_status_and_the_server_keeps_serving(
    serve: ServerFactory, base_path: Path
) -> None:
    async with serve((ModelConfig(MODEL, base_path),)) as running:
        for name, request, code, fragment in _bad_cases():
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await running.predictions.Predict(request)
            assert caught.value.code() == code, name
            details = caught.value.details() or ""
            assert fragment in details, (name, details)
            assert "Traceback" not in details
            await assert_still_serves(running)


async def test_message_over_the_limit_is_resource_exhausted(
    serve: ServerFactory, base_path: Path
) -> None:
    async with serve((ModelConfig(MODEL, base_path),), max_message_bytes=64 * 1024) as running:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await running.predictions.Predict(request_for(images(40)))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await assert_still_serves(running)


async def test_model_not_loaded_yet_is_unavailable(serve: ServerFactory, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    async with serve((ModelConfig(MODEL, empty),)) as running:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await running.predictions.Predict(request_for(images(1)))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_get_model_metadata(serve: ServerFactory, base_path: Path) -> None:
    async with serve((ModelConfig(MODEL, base_path),)) as running:
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = MODEL
        response = await running.predictions.GetModelMetadata(request)
        assert list(response.metadata) == ["signature_def"]
        assert response.model_spec.version.value == 1
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        assert response.metadata["signature_def"].Unpack(signature_map)
        signature = signature_map.signature_def["serving_default"]
        assert signature.method_name == "tensorflow/serving/predict"
        image = signature.inputs["image"]
        assert image.dtype == types_pb2.DT_UINT8
        assert [d.size for d in image.tensor_shape.dim] == [-1, 32, 32, 3]
        assert [d.size for d in signature.outputs["probabilities"].tensor_shape.dim] == [-1, 10]

        request.metadata_field.extend(["signature_def", "model_info"])
        response = await running.predictions.GetModelMetadata(request)
        info = struct_pb2.Struct()
        assert response.metadata["model_info"].Unpack(info)
        assert info["classes"][0] == "dress"
        assert info["input"]["height"] == 32

        request.metadata_field.append("graph")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await running.predictions.GetModelMetadata(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_model_status(serve: ServerFactory, base_path: Path) -> None:
    async with serve((ModelConfig(MODEL, base_path),)) as running:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL
        response = await running.models.GetModelStatus(request)
        (status,) = response.model_version_status
        assert status.version == 1
        assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        assert status.status.error_code == 0
        request.model_spec.name = "missing"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await running.models.GetModelStatus(request)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
