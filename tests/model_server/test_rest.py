"""The REST API, health, readiness and metrics through httpx against a real port."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from clothing.model_server.config import ModelConfig
from clothing.proto.tensorflow_serving.apis import predict_pb2
from tests.fixtures import build_test_model, reference_probabilities
from tests.model_server.conftest import MODEL, Running, ServerFactory
from tests.model_server.test_grpc import images, request_for


async def test_status_json_is_exactly_tf_servings(serve: ServerFactory, base_path: Path) -> None:
    async with (
        serve((ModelConfig(MODEL, base_path),)) as running,
        httpx.AsyncClient(base_url=running.rest_url) as client,
    ):
        expected = {
            "model_version_status": [
                {
                    "version": "1",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }
        assert (await client.get(f"/v1/models/{MODEL}")).json() == expected
        assert (await client.get(f"/v1/models/{MODEL}/versions/1")).json() == expected
        missing = await client.get(f"/v1/models/{MODEL}/versions/9")
        assert missing.status_code == 404
        assert "9" in missing.json()["error"]
        unknown = await client.get("/v1/models/nope")
        assert unknown.status_code == 404
        assert "nope" in unknown.json()["error"]


async def test_metadata(serve: ServerFactory, base_path: Path) -> None:
    async with (
        serve((ModelConfig(MODEL, base_path),)) as running,
        httpx.AsyncClient(base_url=running.rest_url) as client,
    ):
        body = (await client.get(f"/v1/models/{MODEL}/metadata")).json()
        assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}
        signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert signature["inputs"]["image"]["dtype"] == "DT_UINT8"
        assert signature["method_name"] == "tensorflow/serving/predict"
        assert body["metadata"]["model_info"]["classes"][1] == "hat"


async def test_predict_row_columnar_and_b64(serve: ServerFactory, base_path: Path) -> None:
    async with (
        serve((ModelConfig(MODEL, base_path),)) as running,
        httpx.AsyncClient(base_url=running.rest_url) as client,
    ):
        batch = images(2)
        expected = reference_probabilities(batch)
        url = f"/v1/models/{MODEL}:predict"
        rows = await client.post(url, json={"instances": batch.tolist()})
        assert rows.status_code == 200, rows.text
        np.testing.assert_allclose(rows.json()["predictions"], expected, rtol=1e-5, atol=1e-6)
        columns = await client.post(url, json={"inputs": {"image": batch.tolist()}})
        np.testing.assert_allclose(columns.json()["outputs"], expected, rtol=1e-5, atol=1e-6)
        single = await client.post(url, json={"inputs": batch.tolist()})
        np.testing.assert_allclose(single.json()["outputs"], expected, rtol=1e-5, atol=1e-6)
        named = await client.post(
            url, json={"instances": [{"image": row.tolist()} for row in batch]}
        )
        np.testing.assert_allclose(named.json()["predictions"], expected, rtol=1e-5, atol=1e-6)
        encoded = [{"b64": base64.b64encode(row.tobytes()).decode()} for row in batch]
        b64 = await client.post(
            url, json={"instances": encoded, "signature_name": "serving_default"}
        )
        np.testing.assert_allclose(b64.json()["predictions"], expected, rtol=1e-5, atol=1e-6)
        # Floats keep full float32 precision (TF Serving rounds to 6 digits).
        assert rows.json()["predictions"][0][0] == float(
            np.float32(rows.json()["predictions"][0][0])
        )
        versioned = await client.post(
            f"/v1/models/{MODEL}/versions/1:predict", json={"instances": batch.tolist()}
        )
        assert versioned.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "instances"),
        (b'{"instances": [], "inputs": []}', 400, "exactly one"),
        (b'{"instances": []}', 400, "non-empty"),
        (b'{"instances": [[1, 2], [3]]}', 400, "shape"),
        (b'{"instances": [[[[1.5, 2, 3]]]]}', 400, "integers"),
        (b'{"instances": [[[[300, 2, 3]]]]}', 400, "out of range"),
        (b'{"instances": [[[["a", "b", "c"]]]]}', 400, "numbers"),
        (b'{"inputs": {"pixels": [1]}}', 400, "unknown input pixels"),
        (b'{"instances": [{"b64": "!!"}]}', 400, "base64"),
        (b'{"instances": [{"b64": "AAAA"}]}', 400, "b64 holds"),
        (b'{"instances": [[[[1, 2, 3]]]]}', 400, "expected signature"),
        (b'{"instances": [1], "signature_name": "x"}', 400, "serving_default"),
    ],
)
async def test_bad_rest_requests(
    serve: ServerFactory, base_path: Path, body: bytes, status: int, fragment: str
) -> None:
    async with (
        serve((ModelConfig(MODEL, base_path),)) as running,
        httpx.AsyncClient(base_url=running.rest_url) as client,
    ):
        answer = await client.post(f"/v1/models/{MODEL}:predict", content=body)
        assert answer.status_code == status, answer.text
        assert fragment in answer.json()["error"]
        good = await client.post(
            f"/v1/models/{MODEL}:predict", json={"instances": images(1).tolist()}
        )
        assert good.status_code == 200


async def test_errors_have_the_right_http_status(serve: ServerFactory, base_path: Path) -> None:
    async with (
        serve((ModelConfig(MODEL, base_path),), max_message_bytes=4096) as running,
        httpx.AsyncClient(base_url=running.rest_url) as client,
    ):
        body = {"instances": [1]}
        assert (await client.post("/v1/models/nope:predict", json=body)).status_code == 404
        assert (
            await client.post(f"/v1/models/{MODEL}/labels/x:predict", json=body)
        ).status_code == 404
        bad_version = await client.post(f"/v1/models/{MODEL}/versions/abc:predict", json=body)
        assert bad_version.status_code == 400
        too_big = await client.post(
            f"/v1/models/{MODEL}:predict", json={"instances": images(1).tolist()}
        )
        assert too_big.status_code == 413
        assert "limit" in too_big.json()["error"]
        unknown_route = await client.get("/v1/nothing")
        assert unknown_route.status_code == 404
        assert "error" in unknown_route.json()


async def test_health_readiness_and_metrics(serve: ServerFactory, tmp_path: Path) -> None:
    ready_base = tmp_path / "ready"
    build_test_model(ready_base / "1")
    empty = tmp_path / "empty"
    empty.mkdir()
    models = (ModelConfig(MODEL, ready_base), ModelConfig("later", empty))
    async with serve(models) as running, httpx.AsyncClient(base_url=running.rest_url) as client:
        assert (await client.get("/healthz")).status_code == 200
        not_ready = await client.get("/readyz")
        assert not_ready.status_code == 503
        assert "later" in " ".join(not_ready.json()["reasons"])
        build_test_model(empty / "3")
        for _ in range(100):
            if (await client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert (await client.get("/readyz")).status_code == 200

        await client.post(f"/v1/models/{MODEL}:predict", json={"instances": images(1).tolist()})
        await running.predictions.Predict(request_for(images(1)))
        text = (await client.get("/metrics")).text
        assert (
            'model_server_requests_total{code="OK",model="clothing-model",signature="serving_default",'
            'transport="grpc",version="1"} 1.0' in text
        )
        assert 'transport="rest",version="1"} 1.0' in text
        assert 'model_server_inflight_requests{transport="grpc"} 0.0' in text
        assert 'model_server_queue_depth{model="later"} 0.0' in text
        assert 'model_server_model_loads_total{model="later",result="success"} 1.0' in text


async def test_cors(serve: ServerFactory, base_path: Path) -> None:
    origin = "https://shop.example"
    async with (
        serve((ModelConfig(MODEL, base_path),), cors_origins=(origin,)) as running,
        httpx.AsyncClient(base_url=running.rest_url) as client,
    ):
        preflight = await client.options(
            f"/v1/models/{MODEL}:predict",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers["access-control-allow-origin"] == origin
        other = await client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def short_tensor(**spec: object) -> predict_pb2.PredictRequest:
    """A Predict whose tensor holds far fewer bytes than its shape declares."""
    request = request_for(images(1), **spec)
    request.inputs["image"].tensor_content = b"\x00"
    return request


async def grpc_refusal(running: Running, request: predict_pb2.PredictRequest) -> grpc.RpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await running.predictions.Predict(request)
    return refused.value


async def test_refused_requests_are_counted_with_bounded_labels(
    serve: ServerFactory, base_path: Path
) -> None:
    async with (
        serve((ModelConfig(MODEL, base_path),)) as running,
        httpx.AsyncClient(base_url=running.rest_url) as client,
    ):
        assert (await client.post(f"/v1/models/{MODEL}:predict", content=b"{")).status_code == 400
        missing = await client.post("/v1/models/random-1:predict", json={"instances": [1]})
        assert missing.status_code == 404
        refused = await grpc_refusal(running, short_tensor())
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        unknown = request_for(images(1), name="random-2", signature="made-up")
        assert (await grpc_refusal(running, unknown)).code() == grpc.StatusCode.NOT_FOUND
        text = (await client.get("/metrics")).text
    assert (
        'model_server_requests_total{code="INVALID_ARGUMENT",model="clothing-model",'
        'signature="serving_default",transport="rest",version="none"} 1.0' in text
    )
    assert (
        'model_server_requests_total{code="INVALID_ARGUMENT",model="clothing-model",'
        'signature="serving_default",transport="grpc",version="none"} 1.0' in text
    )
    assert (
        'model_server_requests_total{code="NOT_FOUND",model="(unknown)",'
        'signature="serving_default",transport="rest",version="none"} 1.0' in text
    )
    assert (
        'model_server_requests_total{code="NOT_FOUND",model="(unknown)",'
        'signature="(unknown)",transport="grpc",version="none"} 1.0' in text
    )
    assert "random-" not in text
    assert "made-up" not in text


async def test_an_unknown_model_is_not_found_before_its_inputs_are_decoded(
    serve: ServerFactory, base_path: Path
) -> None:
    # TF Serving holds the servable before it converts the request's tensors (RunPredict
    # runs on the handle), so an unknown model is NOT_FOUND whatever the inputs hold.
    # REST answered so already; gRPC used to answer INVALID_ARGUMENT for a bad tensor.
    async with (
        serve((ModelConfig(MODEL, base_path),)) as running,
        httpx.AsyncClient(base_url=running.rest_url) as client,
    ):
        rest = await client.post("/v1/models/nope:predict", content=b"{")
        assert rest.status_code == 404
        assert "nope" in rest.json()["error"]
        refused = await grpc_refusal(running, short_tensor(name="nope"))
        assert refused.code() == grpc.StatusCode.NOT_FOUND
        assert refused.details() == rest.json()["error"]
        # The version is found before the inputs are decoded too.
        refused = await grpc_refusal(running, short_tensor(version=9))
        assert refused.code() == grpc.StatusCode.NOT_FOUND
        assert "9" in str(refused.details())


async def test_metrics_also_where_a_tf_serving_monitoring_config_puts_them(
    serve: ServerFactory, base_path: Path
) -> None:
    async with (
        serve(
            (ModelConfig(MODEL, base_path),), prometheus_path="/monitoring/prometheus/metrics"
        ) as running,
        httpx.AsyncClient(base_url=running.rest_url) as client,
    ):
        answer = await client.get("/monitoring/prometheus/metrics")
        assert answer.status_code == 200
        assert "model_server_model_loads_total" in answer.text
        assert (await client.get("/metrics")).status_code == 200
