"""What the model server takes in before it decides, against real processes.

- a Predict naming inputs the signature lacks is refused before any of them is
  decoded, and a request's inputs are bounded all together, not one by one
  (before: 40 unknown inputs declaring 64 MiB each were expanded, 2.5 GB);
- the inputs of the Predicts in progress are bounded together, under the pod's memory;
- ``metadata_field`` repeated hundreds of thousands of times is refused at once
  (before: the signature map was packed once per entry, on the shared event loop);
- a REST body that trickles is cut at its deadline (408);
- a version that fails to load is reported to callers without its path or the
  runtime's message (those go to the log).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest

from clothing.proto.tensorflow.core.framework import tensor_pb2, types_pb2
from clothing.proto.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tests.fixtures import ModelServerProcess, run_model_server

from .helpers import (
    MODEL,
    images,
    peak_rss_kib,
    predict_request,
    prediction_stub,
    process_stats,
    reset_peak_rss,
)

NEAR_MESSAGE_LIMIT = 64 * 1024 * 1024 - 1024  # bytes one shorthand input declares


def _shorthand(name: str, count: int) -> tensor_pb2.TensorProto:
    """A float32 row of ``count`` values given as one (TF Serving's shorthand)."""
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.float_val.append(1.0)
    proto.tensor_shape.dim.add(size=1)  # one row: within --max_batch_rows
    proto.tensor_shape.dim.add(size=count)
    return proto


def _hostile_predict(unknown: int, *, with_image: bool) -> predict_pb2.PredictRequest:
    request = predict_request(images(1)) if with_image else predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    for i in range(unknown):
        request.inputs[f"unknown_{i}"].CopyFrom(_shorthand(f"unknown_{i}", NEAR_MESSAGE_LIMIT // 4))
    return request


@pytest.mark.parametrize(
    ("unknown", "with_image"),
    [(1, True), (40, False)],
    ids=["one-unknown-beside-the-image", "forty-unknown"],
)
def test_unknown_and_oversized_inputs_are_refused_before_decoding(
    module_model_server: ModelServerProcess, unknown: int, with_image: bool
) -> None:
    request = _hostile_predict(unknown, with_image=with_image)
    pid = module_model_server.process.pid
    before = process_stats(pid).rss_kib
    reset_peak_rss(pid)
    started = time.monotonic()
    with grpc.insecure_channel(module_model_server.grpc_address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            prediction_stub(channel).Predict(request, timeout=60)
        elapsed = time.monotonic() - started
        growth_mb = (peak_rss_kib(pid) - before) / 1024
        print(
            f"{unknown} unknown input(s) of {NEAR_MESSAGE_LIMIT >> 20} MiB in a "
            f"{request.ByteSize()}-byte message: {caught.value.code().name} in {elapsed:.2f} s, "
            f"peak RSS +{growth_mb:.0f} MB"
        )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert growth_mb < 30
        good = prediction_stub(channel).Predict(predict_request(images(2)), timeout=10)
        assert good.outputs["probabilities"].tensor_shape.dim[0].size == 2


def test_inputs_in_progress_are_bounded_under_the_pod_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clothing.model_server import server
    from clothing.model_server.errors import ResourceExhausted
    from clothing.model_server.grpc_api import AdmittedBytes

    monkeypatch.setattr(server, "memory_limit", lambda: 1024 * 2**20)  # the kind overlay's
    limit = server.admitted_input_bytes(64 * 2**20)
    assert limit == 256 * 2**20  # four 64 MiB requests, not 128
    admitted = AdmittedBytes(limit)
    for _ in range(4):
        admitted.take(64 * 2**20)
    with pytest.raises(ResourceExhausted):
        admitted.take(1)
    admitted.give_back(64 * 2**20)
    admitted.take(64 * 2**20)


def test_repeated_metadata_fields_are_refused_at_once(
    module_model_server: ModelServerProcess,
) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.extend(["signature_def"] * 300_000)
    with grpc.insecure_channel(module_model_server.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]
        started = time.monotonic()
        try:
            stub.GetModelMetadata(request, timeout=120)
            outcome = "OK"
        except grpc.RpcError as error:
            outcome = error.code().name
        elapsed = time.monotonic() - started
        print(f"300000 x metadata_field: {outcome} in {elapsed:.2f} s")
        assert outcome == "INVALID_ARGUMENT"
        assert elapsed < 1.0
        request.ClearField("metadata_field")
        request.metadata_field.extend(["signature_def", "signature_def"])
        answer = stub.GetModelMetadata(request, timeout=10)
        assert list(answer.metadata) == ["signature_def"]


async def test_a_trickling_rest_body_is_cut_at_its_deadline(
    module_model_server: ModelServerProcess,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", module_model_server.rest_port)
    writer.write(
        f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode()
    )
    started = time.monotonic()
    answer = b""
    for _ in range(60):  # a byte every half second: 30 s in all
        writer.write(b" ")
        try:
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(4096), 0.5)
        except TimeoutError:
            continue
        except ConnectionError:
            break
        if answer or reader.at_eof():
            break
    elapsed = time.monotonic() - started
    writer.close()
    status = answer.split(b"\r\n", 1)[0].decode()
    print(f"REST body trickling a byte every 0.5 s: {status or 'no answer'} after {elapsed:.1f} s")
    assert status.startswith("HTTP/1.1 408")
    assert elapsed < 13


@pytest.fixture(scope="module")
def broken_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServerProcess]:
    base = tmp_path_factory.mktemp("secret-location") / MODEL
    (base / "1").mkdir(parents=True)
    (base / "1" / "model.onnx").write_bytes(b"\x08\x07not an onnx graph" * 50)
    with run_model_server(base, wait_for_ready=False, expect_exit_code=None) as running:
        yield running


def test_load_errors_reach_callers_without_paths_or_runtime_messages(
    broken_server: ModelServerProcess,
) -> None:
    url = broken_server.rest_url
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status = httpx.get(f"{url}/v1/models/{MODEL}", timeout=5)
        except httpx.ConnectError:  # the REST port is not bound yet
            time.sleep(0.2)
            continue
        if status.status_code == 200 and "END" in status.text:
            break
        time.sleep(0.2)
    ready = httpx.get(f"{url}/readyz", timeout=5)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    with grpc.insecure_channel(broken_server.grpc_address) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            grpc_text = str(stub.GetModelStatus(request, timeout=10))
        except grpc.RpcError as error:  # the gRPC port opens only once a model is served
            grpc_text = error.details() or ""
    for where, text in [("REST status", status.text), ("readyz", ready.text), ("gRPC", grpc_text)]:
        print(f"{where}: {text.strip()[:200]}")
        for leak in ("secret-location", "/tmp", "onnx", "protobuf"):
            assert leak not in text.lower(), (where, text)
    assert "failed to load version 1" in status.text
    assert "secret-location" in broken_server.log()  # the detail is logged
