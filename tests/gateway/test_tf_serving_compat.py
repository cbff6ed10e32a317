"""The gateway against a hand-written PredictionService-only servicer that answers the
way a stock TF Serving with a Keras model does.

It is not TF Serving: it implements PredictionService alone (no ModelService, so
no GetModelStatus), refuses ``model_info`` with INVALID_ARGUMENT as TF Serving
does, has a float32 input with a Keras-style name, and answers with
``float_val`` instead of raw bytes.
"""

import base64

import grpc
import numpy as np
import pytest

from clothing.gateway.imaging import InputSpec, prepare
from clothing.gateway.settings import GatewaySettings
from clothing.proto.tensorflow.core.framework import types_pb2
from clothing.proto.tensorflow.core.protobuf import meta_graph_pb2
from clothing.proto.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from clothing.tensors import from_numpy, shape_proto, to_numpy
from tests.images import jpeg

from . import helpers
from .conftest import gateway_client

SIZE = 12


def expected_scores(batch: np.ndarray) -> np.ndarray:
    """A made-up model: per-channel means of xception-scaled pixels, padded to 10 scores."""
    means = batch.mean(axis=(1, 2))
    return np.concatenate([means, np.zeros((len(batch), 7), np.float32)], axis=1)


class PredictionServiceOnly(prediction_service_pb2_grpc.PredictionServiceServicer):
    """GetModelMetadata and Predict shaped like TF Serving's answers for a Keras export."""

    def __init__(self) -> None:
        self.seen_fields: list[list[str]] = []
        self.seen_batches: list[np.ndarray] = []

    async def GetModelMetadata(self, request, context):
        self.seen_fields.append(list(request.metadata_field))
        if request.model_spec.name != "clothing-model":
            await context.abort(grpc.StatusCode.NOT_FOUND, "Servable not found for request")
        if list(request.metadata_field) != ["signature_def"]:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "Metadata field model_info is not supported"
            )
        signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
        signature.inputs["input_8"].CopyFrom(
            meta_graph_pb2.TensorInfo(
                name="serving_default_input_8:0",
                dtype=types_pb2.DT_FLOAT,
                tensor_shape=shape_proto([-1, SIZE, SIZE, 3]),
            )
        )
        signature.outputs["dense_7"].CopyFrom(
            meta_graph_pb2.TensorInfo(
                name="StatefulPartitionedCall:0",
                dtype=types_pb2.DT_FLOAT,
                tensor_shape=shape_proto([-1, 10]),
            )
        )
        signatures = get_model_metadata_pb2.SignatureDefMap()
        signatures.signature_def["serving_default"].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 1
        response.metadata["signature_def"].Pack(signatures)
        return response

    async def Predict(self, request, context):
        batch = to_numpy(request.inputs["input_8"])
        self.seen_batches.append(batch)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 1
        response.outputs["dense_7"].CopyFrom(
            from_numpy(expected_scores(batch), use_tensor_content=False)
        )
        return response


@pytest.fixture
async def prediction_only_server():
    servicer = PredictionServiceOnly()
    async with helpers.serve_prediction_service(servicer) as address:
        yield address, servicer


async def test_xception_model_behind_a_prediction_service_only_server(
    prediction_only_server, tmp_path
):
    address, servicer = prediction_only_server
    names = ["red", "green", "blue", *[f"other{i}" for i in range(7)]]
    (tmp_path / "labels.txt").write_text("\n".join(names))
    settings = GatewaySettings(
        tf_serving_host=address, labels=str(tmp_path / "labels.txt"), preprocessing="auto"
    )
    data = jpeg((250, 40, 20))
    async with gateway_client(settings) as client:
        answer = await client.post("/predict", json={"image_b64": base64.b64encode(data).decode()})
    assert answer.status_code == 200, answer.text
    assert servicer.seen_fields == [["signature_def", "model_info"], ["signature_def"]]
    (batch,) = servicer.seen_batches
    assert batch.dtype == np.float32
    assert batch.shape == (1, SIZE, SIZE, 3)
    want = prepare(data, InputSpec("input_8", SIZE, SIZE, "float32", "xception"))
    np.testing.assert_allclose(batch[0], want, atol=1e-6)
    assert answer.json()["label"] == "red"
    scores = expected_scores(want[None])[0]
    for name, score in zip(names, scores.tolist(), strict=True):
        assert answer.json()["predictions"][name] == pytest.approx(score, abs=1e-5)


async def test_preprocessing_flag_overrides_the_default(prediction_only_server):
    address, servicer = prediction_only_server
    settings = GatewaySettings(tf_serving_host=address, preprocessing="imagenet")
    async with gateway_client(settings) as client:
        data = base64.b64encode(jpeg((0, 0, 0))).decode()
        answer = await client.post("/predict", json={"image_b64": data})
    assert answer.status_code == 200, answer.text
    assert answer.json()["label"].startswith("class_"), "no classes known: generic names"
    # Black pixels under ImageNet scaling are -mean/std: clearly negative, not -1.
    assert servicer.seen_batches[0][0, 0, 0, 0] == pytest.approx(-0.485 / 0.229, abs=1e-3)


async def test_readiness_without_a_model_service(prediction_only_server):
    """No GetModelStatus to ask: the model is ready when it describes itself."""
    address, servicer = prediction_only_server
    async with gateway_client(GatewaySettings(tf_serving_host=address)) as client:
        answer = await client.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == {"name": "clothing-model", "version": 1}
    assert servicer.seen_fields, "readiness asked for the model's metadata"


async def test_not_ready_without_a_model_service_when_the_model_is_unknown(
    prediction_only_server,
):
    address, _ = prediction_only_server
    settings = GatewaySettings(tf_serving_host=address, model_name="another-model")
    async with gateway_client(settings) as client:
        answer = await client.get("/readyz")
    assert answer.status_code == 503, answer.text
    assert answer.json()["status"] == "unavailable"
