"""`clothing convert` end to end: Keras models in, a real model server and the gateway out.

Marked slow: TensorFlow starts in several subprocesses. Skipped, with the reason,
only where the convert extra (TensorFlow, tf2onnx) is not installed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from clothing.gateway.app import create_app
from clothing.gateway.settings import GatewaySettings
from clothing.proto.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from clothing.proto.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from clothing.tensors import from_numpy, to_numpy
from tests import environment
from tests.fixtures import CLASSES

from .conftest import (
    HERE,
    Converted,
    KerasModels,
    Photos,
    run_convert,
    run_tool,
    tensorflow_missing,
)

pytestmark = [
    pytest.mark.slow,
    # The first test pays for building and converting every model (about two minutes
    # on 2 busy cores); the project's 300 s default would be close on a slower machine.
    pytest.mark.timeout(900),
]

TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def _tensorflow_installed() -> None:
    reason = tensorflow_missing()
    environment.require(reason is None, str(reason))


def float_val_tensor(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A float tensor as a client that lists values writes it (``float_val``)."""
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]
    )
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=shape, float_val=array.ravel().tolist()
    )


def predict(
    server: Converted, model: str, inputs: dict[str, tensor_pb2.TensorProto]
) -> dict[str, np.ndarray]:
    with grpc.insecure_channel(
        server.server.grpc_address, options=[("grpc.max_send_message_length", 1 << 28)]
    ) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = "serving_default"
        for name, tensor in inputs.items():
            request.inputs[name].CopyFrom(tensor)
        response = stub.Predict(request, timeout=60)
    return {name: to_numpy(tensor) for name, tensor in response.outputs.items()}


def signature(server: Converted, model: str) -> dict[str, object]:
    with grpc.insecure_channel(server.server.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = model
        response = stub.GetModelMetadata(request, timeout=20)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    served = signatures.signature_def["serving_default"]

    def describe(tensors: object) -> dict[str, object]:
        return {
            name: (types_pb2.DataType.Name(info.dtype), [d.size for d in info.tensor_shape.dim])
            for name, info in tensors.items()  # type: ignore[attr-defined]
        }

    return {"inputs": describe(served.inputs), "outputs": describe(served.outputs)}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("model", ["small-h5", "small-savedmodel"])
def test_served_model_keeps_the_keras_names(converted: Converted, model: str) -> None:
    assert signature(converted, model) == {
        "inputs": {"input_8": ("DT_FLOAT", [-1, 32, 32, 3])},
        "outputs": {"dense_7": ("DT_FLOAT", [-1, 10])},
    }


def test_uint8_variant_takes_pixels_under_the_same_name(converted: Converted) -> None:
    assert signature(converted, "small-uint8")["inputs"] == {
        "input_8": ("DT_UINT8", [-1, 32, 32, 3])
    }
    version = converted.base / "small-uint8" / "1"
    info = json.loads((version / "metadata.json").read_text())
    assert info["input"] == {
        "name": "input_8",
        "dtype": "uint8",
        "layout": "NHWC",
        "height": 32,
        "width": 32,
        "preprocessing": "none",
    }
    assert info["conversion"]["preprocessing"] == "xception"
    assert info["conversion"]["preprocessing_in_graph"] is True
    assert (version / "classes.txt").read_text().splitlines() == list(CLASSES)


def test_metadata_says_what_the_gateway_must_do(converted: Converted) -> None:
    info = json.loads((converted.base / "xception" / "1" / "metadata.json").read_text())
    assert info["name"] == "xception"
    assert info["classes"] == list(CLASSES)
    assert info["input"]["dtype"] == "float32"
    assert info["input"]["preprocessing"] == "xception"
    assert (info["input"]["height"], info["input"]["width"]) == (71, 71)
    assert info["output"] == {"name": "predictions"}
    assert info["conversion"]["source_format"] == "keras-h5"
    assert info["conversion"]["max_abs_diff"] <= TOLERANCE
    assert info["conversion"]["checked_on"].startswith("6 photos")


@pytest.mark.parametrize("encoding", ["tensor_content", "float_val"])
@pytest.mark.parametrize("model", ["small-h5", "small-savedmodel"])
def test_tf_serving_requests_get_keras_answers(
    converted: Converted, photos: Photos, keras_models: KerasModels, model: str, encoding: str
) -> None:
    batch = photos.inputs["small_xception"]
    tensor = from_numpy(batch) if encoding == "tensor_content" else float_val_tensor(batch)
    outputs = predict(converted, model, {"input_8": tensor})
    assert set(outputs) == {"dense_7"}
    expected = keras_models.reference["small_xception"]
    np.testing.assert_allclose(outputs["dense_7"], expected, rtol=0, atol=TOLERANCE)
    # Not all the same answer: the comparison means something.
    assert len({int(np.argmax(row)) for row in expected}) > 1 or np.ptp(expected) > 0.01


def test_keras_file_with_softmax_answers_probabilities(
    converted: Converted, photos: Photos, keras_models: KerasModels
) -> None:
    outputs = predict(
        converted, "small-keras", {"input_8": from_numpy(photos.inputs["small_imagenet"])}
    )
    probabilities = outputs["dense_7"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    expected = softmax(keras_models.reference["small_imagenet"])
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=TOLERANCE)


def test_uint8_variant_agrees_with_the_float_one(
    converted: Converted, photos: Photos, keras_models: KerasModels
) -> None:
    from_pixels = predict(converted, "small-uint8", {"input_8": from_numpy(photos.small_pixels)})
    from_floats = predict(
        converted, "small-h5", {"input_8": from_numpy(photos.inputs["small_xception"])}
    )
    np.testing.assert_allclose(
        from_pixels["dense_7"], from_floats["dense_7"], rtol=0, atol=TOLERANCE
    )
    np.testing.assert_allclose(
        from_pixels["dense_7"], keras_models.reference["small_xception"], rtol=0, atol=TOLERANCE
    )


def test_xception_matches_keras(
    converted: Converted, photos: Photos, keras_models: KerasModels
) -> None:
    batch = photos.inputs["xception"]
    outputs = predict(converted, "xception", {"input_layer": from_numpy(batch)})
    expected = keras_models.reference["xception"]
    # Untrained weights give small logits: compare relative to their scale too.
    np.testing.assert_allclose(outputs["predictions"], expected, rtol=1e-3, atol=1e-7)


@asynccontextmanager
async def gateway(converted: Converted, model: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(
        tf_serving_host=converted.server.grpc_address, model_name=model, ready_cache_seconds=0.0
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


@pytest.mark.parametrize(
    ("model", "reference"),
    [
        ("xception", "xception"),
        ("small-h5", "small_xception"),
        ("small-uint8", "small_xception"),
        ("small-keras", "small_imagenet"),
    ],
)
async def test_gateway_applies_the_declared_preprocessing(
    converted: Converted, photos: Photos, keras_models: KerasModels, model: str, reference: str
) -> None:
    expected = keras_models.reference[reference]
    if model == "small-keras":
        expected = softmax(expected)
    async with gateway(converted, model) as client:
        for index in (0, 3):
            text = base64.b64encode(photos.encoded[index]).decode()
            response = await client.post("/predict", json={"image_b64": text})
            assert response.status_code == 200, response.text
            answer = response.json()
            scores = np.array([answer["predictions"][name] for name in CLASSES])
            np.testing.assert_allclose(scores, expected[index], rtol=1e-3, atol=1e-7)
            assert answer["label"] == CLASSES[int(np.argmax(expected[index]))]


@pytest.mark.parametrize("model", ["small-h5", "small-savedmodel"])
def test_the_notes_grpc_client_works_unchanged(
    converted: Converted, photos: Photos, keras_models: KerasModels, model: str, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.npy"
    np.save(rows, photos.inputs["small_xception"])
    result = run_tool(
        [HERE / "notes_client.py", converted.server.grpc_address, model, rows], timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    values = np.array(json.loads(result.stdout))
    expected = keras_models.reference["small_xception"].ravel()
    np.testing.assert_allclose(values, expected, rtol=0, atol=TOLERANCE)


def assert_refused(result: object, message: str, model_dir: Path) -> None:
    assert result.returncode == 2, result.stderr  # type: ignore[attr-defined]
    assert message in result.stderr, result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]
    assert not model_dir.exists() or not any(model_dir.iterdir())


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("two_inputs.keras", "the model has 2 inputs (photo, mask)"),
        ("flat_input.keras", "has shape [None, 784]; an image model takes"),
    ],
)
def test_refuses_models_that_are_not_one_image_classifier(
    keras_models: KerasModels, tmp_path: Path, source: str, message: str
) -> None:
    target = tmp_path / "model"
    result = run_convert(
        keras_models.folder / source,
        "--model-dir",
        target,
        "--classes",
        ",".join(CLASSES),
        "--preprocessing",
        "none",
    )
    assert_refused(result, message, target)


def test_refuses_files_that_are_not_models(tmp_path: Path) -> None:
    target = tmp_path / "model"
    text = tmp_path / "model.h5"
    text.write_text("not a model\n")
    folder = tmp_path / "export"
    folder.mkdir()
    for source, message in [
        (text, "is not a Keras model (.h5 or .keras) nor a SavedModel folder"),
        (folder, "is a folder without saved_model.pb: not a SavedModel"),
        (tmp_path / "missing.h5", "does not exist"),
    ]:
        result = run_convert(
            source, "--model-dir", target, "--classes", "a,b", "--preprocessing", "none"
        )
        assert_refused(result, message, target)


def test_refuses_an_unknown_preprocessing(keras_models: KerasModels, tmp_path: Path) -> None:
    target = tmp_path / "model"
    result = run_convert(
        keras_models.folder / "small.h5",
        "--model-dir",
        target,
        "--classes",
        ",".join(CLASSES),
        "--preprocessing",
        "caffe",
    )
    assert_refused(result, "invalid choice: 'caffe'", target)


def test_refuses_wrong_class_count_and_an_occupied_version(
    converted: Converted, keras_models: KerasModels, tmp_path: Path
) -> None:
    target = tmp_path / "model"
    result = run_convert(
        keras_models.folder / "small.h5",
        "--model-dir",
        target,
        "--classes",
        "a,b,c",
        "--preprocessing",
        "xception",
    )
    assert_refused(result, "the model gives 10 scores but 3 class names were given", target)
    occupied = converted.base / "small-h5"
    before = (occupied / "1" / "model.onnx").read_bytes()
    result = run_convert(
        keras_models.folder / "small.h5",
        "--model-dir",
        occupied,
        "--version",
        "1",
        "--classes",
        ",".join(CLASSES),
        "--preprocessing",
        "xception",
    )
    assert result.returncode == 2
    assert "already holds a model; pick another --version" in result.stderr
    assert (occupied / "1" / "model.onnx").read_bytes() == before


def test_answers_that_differ_from_keras_exit_1_and_write_nothing(
    keras_models: KerasModels, tmp_path: Path
) -> None:
    target = tmp_path / "model"
    # The real command with a tolerance no conversion can meet: the failure path end to end.
    code = (
        "import sys\n"
        "import clothing.convert.convert as convert\n"
        "convert.PARITY_TOLERANCE = -1.0\n"
        "from clothing.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["convert", str(keras_models.folder / "small.h5"), "--model-dir", str(target)]
    args += ["--classes", ",".join(CLASSES), "--preprocessing", "xception"]
    result = run_tool(["-c", code, *args])
    assert result.returncode == 1, result.stderr[-4000:]
    assert "ONNX Runtime differs from Keras by" in result.stderr
    assert "nothing written" in result.stderr
    assert not target.exists() or not any(target.iterdir())
