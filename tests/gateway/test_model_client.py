"""The gateway's model client against answers a real model server would rarely give:
a scripted PredictionService on loopback sends each malformed metadata or Predict
answer, and the client must turn it into a clear gateway error. Also the
``TF_SERVING_HOST`` address forms, and a roll-out the metadata has not caught up with.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import json_format, struct_pb2

from clothing.gateway.errors import ModelServerError, ModelUnavailable, UpstreamTimeout
from clothing.gateway.imaging import InputSpec
from clothing.gateway.model_client import ModelClient, ModelInfo, grpc_target
from clothing.gateway.settings import GatewaySettings
from clothing.proto.tensorflow.core.framework import tensor_pb2, types_pb2
from clothing.proto.tensorflow.core.protobuf import meta_graph_pb2
from clothing.proto.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from clothing.serving_layout import ModelInterface
from clothing.tensors import from_numpy, shape_proto
from tests.environment import require
from tests.images import jpeg

from . import helpers
from .conftest import gateway_client

MODEL = "clothing-model"
SIZE = 8


def tensor_info(dtype: Any, dims: list[int]) -> meta_graph_pb2.TensorInfo:
    return meta_graph_pb2.TensorInfo(name="t:0", dtype=dtype, tensor_shape=shape_proto(dims))


IMAGE = tensor_info(types_pb2.DT_UINT8, [-1, SIZE, SIZE, 3])
SCORES = tensor_info(types_pb2.DT_FLOAT, [-1, 3])


def signature(
    inputs: dict[str, meta_graph_pb2.TensorInfo] | None = None,
    outputs: dict[str, meta_graph_pb2.TensorInfo] | None = None,
) -> meta_graph_pb2.SignatureDef:
    made = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for name, info in (inputs or {"image": IMAGE}).items():
        made.inputs[name].CopyFrom(info)
    for name, info in (outputs or {"probabilities": SCORES}).items():
        made.outputs[name].CopyFrom(info)
    return made


def metadata(
    signatures: dict[str, meta_graph_pb2.SignatureDef] | None, version: int = 1
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = MODEL
    response.model_spec.version.value = version
    if signatures is not None:
        packed = get_model_metadata_pb2.SignatureDefMap()
        for name, made in signatures.items():
            packed.signature_def[name].CopyFrom(made)
        response.metadata["signature_def"].Pack(packed)
    return response


def predicted(
    output: tensor_pb2.TensorProto | None, version: int = 1, name: str = "probabilities"
) -> predict_pb2.PredictResponse:
    response = predict_pb2.PredictResponse()
    response.model_spec.name = MODEL
    response.model_spec.version.value = version
    if output is not None:
        response.outputs[name].CopyFrom(output)
    return response


@dataclass
class Scripted(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers with whatever the test set: a response, or a status to abort with."""

    metadata_answer: Any = field(default_factory=lambda: metadata({"serving_default": signature()}))
    predict_answer: Callable[[predict_pb2.PredictRequest], Any] = field(
        default=lambda request: predicted(from_numpy(np.full((1, 3), 1 / 3, np.float32)))
    )
    delay: float = 0.0

    async def GetModelMetadata(self, request: Any, context: Any) -> Any:
        await asyncio.sleep(self.delay)
        if isinstance(self.metadata_answer, grpc.StatusCode):
            await context.abort(self.metadata_answer, "scripted refusal")
        return self.metadata_answer

    async def Predict(self, request: Any, context: Any) -> Any:
        return self.predict_answer(request)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[str, Scripted]]:
    servicer = Scripted()
    async with helpers.serve_prediction_service(servicer) as address:
        yield address, servicer


@pytest.fixture
async def client(scripted: tuple[str, Scripted]) -> AsyncIterator[ModelClient]:
    made = ModelClient(scripted[0], MODEL, deadline=2.0)
    yield made
    await made.close()


DT_FLOAT, DT_UINT8, DT_STRING = types_pb2.DT_FLOAT, types_pb2.DT_UINT8, types_pb2.DT_STRING


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (metadata(None), "model server sent no signature_def metadata"),
        (
            metadata({"other": signature()}),
            "model has no signature 'serving_default' (has: other)",
        ),
        (
            metadata({"serving_default": signature({"image": tensor_info(DT_STRING, [-1])})}),
            "model input 'image' has an unsupported dtype",
        ),
        (
            metadata({"serving_default": signature({"image": tensor_info(DT_UINT8, [-1, 8])})}),
            "model input shape [-1, 8] is not [batch, height, width, 3]",
        ),
        (
            metadata(
                {"serving_default": signature({"image": tensor_info(DT_UINT8, [-1, -1, -1, 3])})}
            ),
            "model input has no fixed height and width",
        ),
        (
            metadata({"serving_default": signature({"a": IMAGE, "b": IMAGE})}),
            "cannot tell which input to use among ['a', 'b']",
        ),
        (
            metadata(
                {
                    "serving_default": signature(
                        outputs={"x": tensor_info(DT_FLOAT, [-1, 3]), "y": IMAGE}
                    )
                }
            ),
            "cannot tell which output to use among ['x', 'y']",
        ),
    ],
    ids=[
        "no-signatures",
        "no-such-signature",
        "string-input",
        "not-an-image-shape",
        "no-size",
        "two-inputs",
        "two-outputs",
    ],
)
async def test_metadata_the_gateway_cannot_use_is_a_model_server_error(
    scripted: tuple[str, Scripted], client: ModelClient, answer: Any, message: str
) -> None:
    scripted[1].metadata_answer = answer
    with pytest.raises(ModelServerError) as refused:
        await client.metadata()
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        (grpc.StatusCode.NOT_FOUND, ModelUnavailable, "unavailable for GetModelMetadata"),
        (
            grpc.StatusCode.PERMISSION_DENIED,
            ModelServerError,
            r"refused GetModelMetadata \(PERMISSION_DENIED\)",
        ),
        # Refused with and then without model_info: the second refusal is the answer.
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            ModelServerError,
            r"refused GetModelMetadata \(INVALID_ARGUMENT\)",
        ),
    ],
)
async def test_a_metadata_refusal_maps_to_its_gateway_error(
    scripted: tuple[str, Scripted],
    client: ModelClient,
    code: grpc.StatusCode,
    error: type[Exception],
    message: str,
) -> None:
    scripted[1].metadata_answer = code
    with pytest.raises(error, match=message):
        await client.metadata()


async def test_metadata_that_does_not_come_in_time_is_a_timeout(
    scripted: tuple[str, Scripted],
) -> None:
    scripted[1].delay = 5.0
    slow = ModelClient(scripted[0], MODEL, deadline=0.3)
    try:
        with pytest.raises(UpstreamTimeout, match="did not answer GetModelMetadata in time"):
            await slow.metadata()
    finally:
        await slow.close()


def with_model_info(
    response: get_model_metadata_pb2.GetModelMetadataResponse, info: dict[str, Any]
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """The response with ``model_info`` as this project's model server sends it."""
    struct = struct_pb2.Struct()
    json_format.ParseDict(info, struct)
    response.metadata["model_info"].Pack(struct)
    return response


FLOAT_IMAGE = tensor_info(types_pb2.DT_FLOAT, [-1, SIZE, SIZE, 3])
DYNAMIC_IMAGE = tensor_info(types_pb2.DT_FLOAT, [-1, -1, -1, 3])


@pytest.mark.parametrize(
    ("inputs", "info", "wanted"),
    [
        # The signature's fixed size wins over a metadata.json that disagrees with it.
        ({"image": IMAGE}, {"input": {"height": 99, "width": 77}}, ("image", SIZE, SIZE, "none")),
        # model_info fills the size the signature leaves open (sent as floats by Struct).
        (
            {"image": DYNAMIC_IMAGE},
            {"input": {"height": 30, "width": 40, "preprocessing": "imagenet"}},
            ("image", 30, 40, "imagenet"),
        ),
        # A float model that says nothing is taken for a Keras Xception export.
        ({"input_8": FLOAT_IMAGE}, {}, ("input_8", SIZE, SIZE, "xception")),
        # model_info picks among several inputs.
        ({"a": IMAGE, "b": FLOAT_IMAGE}, {"input": {"name": "b"}}, ("b", SIZE, SIZE, "xception")),
    ],
    ids=["signature-size-wins", "dynamic-size-from-model-info", "float-default", "named-input"],
)
async def test_the_signature_and_model_info_make_the_input(
    scripted: tuple[str, Scripted],
    client: ModelClient,
    inputs: dict[str, meta_graph_pb2.TensorInfo],
    info: dict[str, Any],
    wanted: tuple[str, int, int, str],
) -> None:
    response = metadata({"serving_default": signature(inputs)})
    scripted[1].metadata_answer = with_model_info(response, {"classes": ["a", "b", "c"], **info})
    got = await client.metadata()
    spec = got.input
    assert (spec.name, spec.height, spec.width, spec.preprocessing) == wanted
    assert got.classes == ("a", "b", "c")


async def test_an_unknown_preprocessing_is_refused_unless_the_operator_names_one(
    scripted: tuple[str, Scripted], client: ModelClient
) -> None:
    response = metadata({"serving_default": signature()})
    scripted[1].metadata_answer = with_model_info(response, {"input": {"preprocessing": "sepia"}})
    with pytest.raises(ModelServerError, match="unknown preprocessing 'sepia'"):
        await client.metadata()
    told = ModelClient(scripted[0], MODEL, deadline=2.0, preprocessing="imagenet")
    try:
        assert (await told.metadata()).input.preprocessing == "imagenet"
    finally:
        await told.close()


def _bad_tensor() -> tensor_pb2.TensorProto:
    proto = from_numpy(np.zeros((1, 3), np.float32))
    proto.tensor_content = proto.tensor_content[:5]  # 5 bytes cannot be 3 float32
    return proto


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (predicted(None), "model server sent no output 'probabilities'"),
        (predicted(_bad_tensor()), "model server sent a bad tensor"),
        (
            predicted(from_numpy(np.zeros(3, np.float32))),
            "model answered shape [3] for 1 images",
        ),
        (
            predicted(from_numpy(np.zeros((2, 3), np.float32))),
            "model answered shape [2, 3] for 1 images",
        ),
    ],
    ids=["no-output", "bad-tensor", "one-dimension", "wrong-rows"],
)
async def test_a_predict_answer_that_does_not_fit_is_a_model_server_error(
    scripted: tuple[str, Scripted], client: ModelClient, answer: Any, message: str
) -> None:
    scripted[1].predict_answer = lambda request: answer
    info = await client.metadata()
    with pytest.raises(ModelServerError, match=message.replace("[", r"\[").replace("]", r"\]")):
        await client.predict(np.zeros((1, SIZE, SIZE, 3), np.uint8), info)


async def test_a_version_the_metadata_has_not_caught_up_with_is_reported_and_counted(
    scripted: tuple[str, Scripted],
) -> None:
    """Predict answers from version 2 while GetModelMetadata still says 1 (a roll-out
    half-way through): the answer names version 2 and the change is counted."""
    servicer = scripted[1]
    servicer.predict_answer = lambda request: predicted(
        from_numpy(np.array([[0.2, 0.7, 0.1]], np.float32)), version=2
    )
    settings = GatewaySettings(tf_serving_host=scripted[0], ready_cache_seconds=0.0, metrics_port=0)
    body = {"image_b64": base64.b64encode(jpeg()).decode()}
    async with gateway_client(settings) as gateway:
        answer = await gateway.post("/predict", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == {"name": MODEL, "version": 2}
        assert answer.json()["label"] == "class_1"
        metrics = (await gateway.get("/metrics")).text
    assert "gateway_model_version_changes_total 1.0" in metrics


# TF_SERVING_HOST address forms.


def test_a_single_address_is_the_channel_target_as_it_is() -> None:
    assert grpc_target(" model-server:8500 ") == "model-server:8500"
    assert grpc_target("dns:///model-server:8500") == "dns:///model-server:8500"


def test_an_ipv4_list_is_one_static_target_without_repeats() -> None:
    target = grpc_target("127.0.0.1:8500, 127.0.0.2:8500,127.0.0.1:8500")
    assert target == "ipv4:127.0.0.1:8500,127.0.0.2:8500"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_ipv6_entries_make_an_ipv6_target_with_ipv4_mapped() -> None:
    assert grpc_target("[::1]:8500,[::1]:8501") == "ipv6:[::1]:8500,[::1]:8501"
    mixed = grpc_target("[::1]:8500,127.0.0.1:8501")
    assert mixed == "ipv6:[::1]:8500,[::ffff:7f00:1]:8501"  # 127.0.0.1, IPv4-mapped


@pytest.mark.parametrize("setting", ["", "   "])
def test_an_empty_setting_is_refused(setting: str) -> None:
    with pytest.raises(ValueError, match="TF_SERVING_HOST is empty"):
        grpc_target(setting)


@pytest.mark.parametrize("entry", ["model-server", "127.0.0.1:http", ":8500", "127.0.0.1:"])
def test_a_malformed_entry_in_a_list_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match=f"entry {entry!r} is not host:port"):
        grpc_target(f"127.0.0.1:8500,{entry}")


@dataclass
class PeerNoting(Scripted):
    peers: set[str] = field(default_factory=set)

    async def GetModelMetadata(self, request: Any, context: Any) -> Any:
        self.peers.add(context.peer().split(":", 1)[0])
        return await super().GetModelMetadata(request, context)


async def test_a_mixed_list_reaches_the_server_over_ipv6_and_mapped_ipv4() -> None:
    """One server on ::1 and on 127.0.0.1; the client's list names both."""
    require(_ipv6_loopback(), "this machine has no IPv6 loopback (::1)")
    server = grpc.aio.server()
    servicer = PeerNoting()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(  # type: ignore[no-untyped-call]
        servicer, server
    )
    six = server.add_insecure_port("[::1]:0")
    four = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = ModelClient(f"[::1]:{six}, 127.0.0.1:{four}", MODEL, deadline=5.0)
    try:
        assert client.target == f"ipv6:[::1]:{six},[::ffff:7f00:1]:{four}"
        expected = ModelInfo(MODEL, 1, ModelInterface((), "image", SIZE, SIZE, "probabilities"))
        async with asyncio.timeout(30):  # round robin reaches both once both connect
            while len(servicer.peers) < 2:
                info = await client.metadata()
                assert info == expected
                assert info.input == InputSpec("image", SIZE, SIZE)
    finally:
        await client.close()
        await server.stop(None)
    assert servicer.peers == {"ipv6", "ipv4"}, servicer.peers
