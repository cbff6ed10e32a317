"""Malformed gRPC against a real model-server process: a clean status, then it still serves.

tests/model_server/test_grpc.py covers unknown model/version/label/signature,
wrong input name, dtype, rank and shape, bad tensor_content length, DT_STRING
and a message over the size limit. These add forged shapes (negative, huge,
overflowing, the one-value shorthand declaring gigabytes), typed-value count
and range errors, empty batches and bytes that are not a protobuf at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from clothing import tensors
from clothing.proto.tensorflow.core.framework import tensor_pb2, types_pb2
from clothing.proto.tensorflow_serving.apis import predict_pb2
from tests.fixtures import (
    ModelServerProcess,
    build_test_model,
    reference_probabilities,
    run_model_server,
)

from .helpers import MODEL, images, predict_request, prediction_stub, process_stats

PREDICT = "/tensorflow.serving.PredictionService/Predict"
LIMIT = 4194304  # the server's --max_message_bytes
PADDING_FIELD = 1000  # not a field of PredictRequest


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServerProcess]:
    base = tmp_path_factory.mktemp("hostile") / MODEL
    build_test_model(base / "1")
    # Rows are bounded separately (test_amplification.py); here only bytes are.
    limits = [f"--max_message_bytes={LIMIT}", "--max_batch_rows=100000"]
    with run_model_server(base, extra_args=limits) as running:
        yield running


def _request(proto: tensor_pb2.TensorProto, dims: list[int]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    image = request.inputs["image"]
    image.CopyFrom(proto)
    image.tensor_shape.Clear()
    for size in dims:
        image.tensor_shape.dim.add(size=size)
    return request


def _shorthand(dims: list[int], value: int = 7) -> predict_pb2.PredictRequest:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8)
    proto.int_val.append(value)
    return _request(proto, dims)


def _hostile_cases() -> list[tuple[str, predict_pb2.PredictRequest, str]]:
    cases = [
        ("negative dimension", _shorthand([-1, 32, 32, 3]), "negative"),
        ("huge dimension", _shorthand([1 << 40, 32, 32, 3]), "--max_batch_rows"),
        ("huge inner dimension", _shorthand([1, 1 << 40, 32, 3]), "bytes"),
        ("overflowing product", _shorthand([1 << 62, 1 << 62, 32, 3]), "--max_batch_rows"),
        ("overflowing inner product", _shorthand([1, 1 << 62, 1 << 62, 3]), "bytes"),
        # 25 bytes on the wire asking for 150 MB (under 2^31 elements, so only a
        # byte limit stops it): refused before allocating.
        ("shorthand fill of 150 MB", _shorthand([50_000, 32, 32, 3]), "byte limit"),
        ("value out of uint8 range", _shorthand([1, 32, 32, 3], value=300), "fit"),
    ]
    unknown_dtype = tensor_pb2.TensorProto()
    unknown_dtype.dtype = 9999  # type: ignore[assignment]
    cases.append(("unknown dtype code", _request(unknown_dtype, [1, 32, 32, 3]), "DT_UNKNOWN"))
    too_few = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8)
    too_few.int_val.extend([1, 2, 3, 4, 5])
    cases.append(("typed values count mismatch", _request(too_few, [1, 32, 32, 3]), "int_val"))
    short_content = tensors.from_numpy(images(2))
    cases.append(("content shorter than shape", _request(short_content, [3, 32, 32, 3]), "bytes"))
    float_as_uint8 = tensors.from_numpy(images(1).astype(np.float32))
    cases.append(("float32 for uint8", _request(float_as_uint8, [1, 32, 32, 3]), "uint8"))
    many_inputs = predict_request(images(1))
    for index in range(200):
        many_inputs.inputs[f"extra{index}"].CopyFrom(tensors.from_numpy(np.zeros(1, np.uint8)))
    cases.append(("200 unknown inputs", many_inputs, "unknown input"))
    return cases


def _assert_serves(server: ModelServerProcess) -> None:
    batch = images(2, seed=5)
    with grpc.insecure_channel(server.grpc_address) as channel:
        response = prediction_stub(channel).Predict(predict_request(batch), timeout=10)
    got = np.asarray(response.outputs["probabilities"].float_val).reshape(2, 10)
    np.testing.assert_allclose(got, reference_probabilities(batch), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "request_", "fragment"), _hostile_cases())
def test_hostile_tensor_is_invalid_argument_fast_and_cheap(
    server: ModelServerProcess, name: str, request_: predict_pb2.PredictRequest, fragment: str
) -> None:
    before = process_stats(server.process.pid)
    started = time.monotonic()
    with (
        grpc.insecure_channel(server.grpc_address) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        prediction_stub(channel).Predict(request_, timeout=10)
    elapsed = time.monotonic() - started
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, error.details())
    details = error.details() or ""
    assert fragment in details, (name, details)
    assert "Traceback" not in details
    assert elapsed < 2.0, (name, elapsed)
    after = process_stats(server.process.pid)
    # Nothing the size of the declared tensor was allocated.
    assert after.rss_kib - before.rss_kib < 50_000, (name, before, after)
    _assert_serves(server)


def test_empty_batch_is_answered_cleanly(server: ModelServerProcess) -> None:
    empty = predict_request(np.zeros((0, 32, 32, 3), np.uint8))
    with grpc.insecure_channel(server.grpc_address) as channel:
        response = prediction_stub(channel).Predict(empty, timeout=10)
    probabilities = response.outputs["probabilities"]
    assert [d.size for d in probabilities.tensor_shape.dim] == [0, 10]
    assert len(probabilities.float_val) == 0
    _assert_serves(server)


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", bytes(range(256)) * 4],
    ids=["varint-garbage", "length-past-end", "byte-soup"],
)
def test_bytes_that_are_not_a_protobuf(server: ModelServerProcess, payload: bytes) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        raw = channel.unary_unary(PREDICT)
        with pytest.raises(grpc.RpcError) as caught:
            raw(payload, timeout=10)
    code = caught.value.code()
    details = caught.value.details() or ""
    # Regression: grpcio answered UNKNOWN "Unexpected <class '...DecodeError'>".
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert "not a valid protobuf" in details
    assert "class" not in details
    _assert_serves(server)


def test_message_over_the_limit_then_serves(server: ModelServerProcess) -> None:
    big = predict_request(images(1500))  # 4.6 MB against a 4 MiB limit
    with (
        grpc.insecure_channel(server.grpc_address) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        prediction_stub(channel).Predict(big, timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _assert_serves(server)
    assert server.process.poll() is None


def _sized_predict(size: int) -> tuple[bytes, int]:
    """A valid Predict message of exactly ``size`` bytes, and its batch size.

    As many 32x32 images as fit (the largest tensor the message limit admits),
    topped up with an unknown field, which protobuf parsers keep and ignore.
    """
    count = (size - 1024) // (32 * 32 * 3)
    message = predict_request(images(count, seed=3)).SerializeToString()
    gap = size - len(message)
    tag = _varint(PADDING_FIELD << 3 | 2)
    for length_size in range(1, 5):
        padding = gap - len(tag) - length_size
        if len(_varint(padding)) == length_size:
            padded = message + tag + _varint(padding) + b"\0" * padding
            assert len(padded) == size
            return padded, count
    raise AssertionError(f"cannot pad {len(message)} bytes to {size}")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_the_message_limit_is_exact(server: ModelServerProcess) -> None:
    """limit - 1 and limit bytes are served in full; limit + 1 is RESOURCE_EXHAUSTED."""
    with grpc.insecure_channel(server.grpc_address) as channel:
        raw = channel.unary_unary(
            PREDICT, response_deserializer=predict_pb2.PredictResponse.FromString
        )
        for size in (LIMIT - 1, LIMIT):
            message, count = _sized_predict(size)
            response = raw(message, timeout=60)
            # The byte limit on decoded tensors must not refuse what the message limit admits.
            assert response.outputs["probabilities"].tensor_shape.dim[0].size == count
        over, _ = _sized_predict(LIMIT + 1)
        with pytest.raises(grpc.RpcError) as caught:
            raw(over, timeout=60)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _assert_serves(server)
