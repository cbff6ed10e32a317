"""Wire compatibility with an independently generated copy of TF Serving's protos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from clothing import tensors
from clothing.proto.tensorflow.core.framework import types_pb2
from clothing.proto.tensorflow_serving.apis import predict_pb2
from tests.fixtures import build_test_model, reference_probabilities, run_model_server

CLIENT = Path(__file__).with_name("tfs_client.py")


def tfs_client(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(CLIENT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def sample() -> np.ndarray:
    return np.random.default_rng(11).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)


def test_their_request_parses_in_our_protos() -> None:
    request = predict_pb2.PredictRequest.FromString(bytes.fromhex(tfs_client("encode")))
    assert request.model_spec.name == "clothing-model"
    assert request.model_spec.version.value == 3
    assert request.model_spec.signature_name == "serving_default"
    assert list(request.output_filter) == ["probabilities"]
    image = request.inputs["image"]
    assert image.dtype == types_pb2.DT_UINT8
    np.testing.assert_array_equal(tensors.to_numpy(image), sample())


def test_our_response_parses_in_their_protos() -> None:
    response = predict_pb2.PredictResponse()
    response.model_spec.name = "clothing-model"
    response.model_spec.version_label = "stable"
    response.model_spec.signature_name = "serving_default"
    values = np.linspace(0, 1, 20, dtype=np.float32).reshape(2, 10)
    response.outputs["probabilities"].CopyFrom(tensors.from_numpy(values, use_tensor_content=False))
    decoded = json.loads(tfs_client("decode", response.SerializeToString().hex()))
    assert decoded["model_spec"] == ["clothing-model", "stable", "serving_default"]
    assert decoded["dtype"] == "DT_FLOAT"
    assert decoded["shape"] == [2, 10]
    np.testing.assert_array_equal(np.asarray(decoded["float_val"], np.float32), values.ravel())


def test_official_style_client_round_trip(tmp_path: Path) -> None:
    build_test_model(tmp_path / "clothing-model" / "1")
    with run_model_server(tmp_path / "clothing-model") as server:
        answer = json.loads(tfs_client("predict", server.grpc_address, "clothing-model"))
    assert answer["shape"] == [2, 10]
    assert answer["model_spec"] == ["clothing-model", 1, "serving_default"]
    np.testing.assert_allclose(
        np.asarray(answer["probabilities"]).reshape(2, 10),
        reference_probabilities(sample()),
        rtol=1e-5,
        atol=1e-6,
    )
    assert answer["input_dtype"] == "DT_UINT8"
    assert answer["input_shape"] == [-1, 32, 32, 3]
    assert answer["method_name"] == "tensorflow/serving/predict"
