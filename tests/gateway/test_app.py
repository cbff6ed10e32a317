import base64
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from clothing.gateway.imaging import InputSpec, prepare
from tests.fixtures import CLASSES, reference_probabilities
from tests.images import gif_two_frames, jpeg, png_rgba, webp

from .conftest import gateway_client, image_routes, settings_for

SPEC = InputSpec("image", 32, 32)


def expected(data: bytes) -> dict[str, float]:
    scores = reference_probabilities(prepare(data, SPEC)[None])[0]
    return dict(zip(CLASSES, scores.tolist(), strict=True))


def check_prediction(body: dict[str, Any], data: bytes) -> None:
    want = expected(data)
    assert list(body["predictions"]) == sorted(want, key=want.__getitem__, reverse=True)
    for name, probability in body["predictions"].items():
        assert probability == pytest.approx(want[name], abs=1e-5)
    assert body["label"] == max(want, key=want.__getitem__)
    assert body["model"] == {"name": "clothing-model", "version": 1}
    assert set(body["timing_ms"]) == {"fetch", "preprocess", "inference", "total"}
    assert body["timing_ms"]["total"] >= body["timing_ms"]["inference"] > 0


@pytest.mark.parametrize(
    "path", ["/red.jpg", "/green.png", "/blue.webp", "/frames.gif", "/rotated.jpg", "/to-red"]
)
async def test_every_format_by_url(gateway, image_server, path):
    answer = await gateway.post("/predict", json={"url": image_server.url(path)})
    assert answer.status_code == 200, answer.text
    target = "/red.jpg" if path == "/to-red" else path
    check_prediction(answer.json(), image_routes()[target].body)
    assert answer.json()["timing_ms"]["fetch"] > 0


async def test_upload_and_base64_give_the_same_answer(gateway):
    data = webp()
    upload = await gateway.post("/predict", files={"file": ("x.webp", data, "image/webp")})
    assert upload.status_code == 200, upload.text
    check_prediction(upload.json(), data)
    encoded = base64.b64encode(data).decode()
    for text in (encoded, "data:image/webp;base64," + encoded):
        answer = await gateway.post("/predict", json={"image_b64": text})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == upload.json()["predictions"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/text", 400, "not_an_image"),
        ("/truncated.jpg", 400, "not_an_image"),
        ("/bomb.png", 413, "too_large"),
        ("/huge", 413, "too_large"),
        ("/missing", 502, "image_host_failed"),
        ("/to-metadata", 403, "address_refused"),
    ],
)
async def test_bad_images_get_clear_errors(gateway, image_server, path, status, code):
    started = time.monotonic()
    answer = await gateway.post("/predict", json={"url": image_server.url(path)})
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), answer.text
    assert set(answer.json()) == {"error"}
    assert "Traceback" not in answer.text
    assert time.monotonic() - started < 2.0


async def test_image_server_sending_a_byte_per_second_times_out(gateway, image_server):
    started = time.monotonic()
    answer = await gateway.post("/predict", json={"url": image_server.url("/slow.jpg")})
    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "timeout"
    assert time.monotonic() - started < 3.0  # fetch_timeout is 2 s


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/red.jpg",
        "http://localhost:{port}/red.jpg",
        "http://[::1]:{port}/red.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:{port}/red.jpg",
        "http://2130706433:{port}/red.jpg",
        "http://[::ffff:127.0.0.1]:{port}/red.jpg",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{port}/_x",
    ],
)
async def test_private_addresses_are_refused_without_the_allow_list(
    session_model_server, image_server, url
):
    async with gateway_client(settings_for(session_model_server, allow_hosts=())) as client:
        answer = await client.post("/predict", json={"url": url.format(port=image_server.port)})
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "address_refused"
        metrics = (await client.get("/metrics")).text
        assert "gateway_refused_addresses_total 1.0" in metrics


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {}}, 422),
        ({"json": {"url": 5}}, 422),
        ({"json": {"url": "http://a/", "image_b64": "AA=="}}, 422),
        ({"json": {"link": "http://a/"}}, 422),
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 422),
        ({"json": {"image_b64": "***"}}, 400),
        ({"json": {"image_b64": base64.b64encode(b"plain text").decode()}}, 400),
        ({"content": b"http://a/", "headers": {"Content-Type": "text/plain"}}, 415),
        ({"files": {"other": ("x.jpg", b"abc", "image/jpeg")}}, 422),
    ],
)
async def test_malformed_requests(gateway, kwargs, status):
    answer = await gateway.post("/predict", **kwargs)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "request_id"}
    assert error["request_id"] == answer.headers["x-request-id"]


async def test_upload_over_the_cap_is_refused(gateway):
    big = b"\xff\xd8" + b"\0" * (1024 * 1024 + 10)
    answer = await gateway.post("/predict", files={"file": ("big.jpg", big, "image/jpeg")})
    assert answer.status_code == 413
    answer = await gateway.post("/predict", json={"image_b64": base64.b64encode(big).decode()})
    assert answer.status_code == 413


async def test_batch_by_urls_reports_errors_per_item(gateway, image_server):
    urls = [image_server.url(p) for p in ("/red.jpg", "/text", "/blue.webp", "/missing")]
    answer = await gateway.post("/predict/batch", json={"urls": urls})
    assert answer.status_code == 200, answer.text
    red, text, blue, missing = answer.json()["results"]
    check_prediction(red, image_routes()["/red.jpg"].body)
    check_prediction(blue, image_routes()["/blue.webp"].body)
    assert text["error"]["code"] == "not_an_image"
    assert missing["error"]["code"] == "image_host_failed"
    assert red["timing_ms"]["inference"] == blue["timing_ms"]["inference"], "one model call"


async def test_batch_by_files_and_base64(gateway):
    images = [jpeg((10, 200, 10)), gif_two_frames(), png_rgba()]
    files = [
        ("files", (f"{i}.img", data, "application/octet-stream")) for i, data in enumerate(images)
    ]
    answer = await gateway.post("/predict/batch", files=files)
    assert answer.status_code == 200, answer.text
    for body, data in zip(answer.json()["results"], images, strict=True):
        check_prediction(body, data)
    encoded = [base64.b64encode(d).decode() for d in images]
    again = await gateway.post("/predict/batch", json={"images_b64": encoded})
    assert [r["predictions"] for r in again.json()["results"]] == [
        r["predictions"] for r in answer.json()["results"]
    ]


async def test_batch_limits(session_model_server, image_server):
    async with gateway_client(settings_for(session_model_server, max_batch=2)) as client:
        urls = [image_server.url("/red.jpg")] * 3
        answer = await client.post("/predict/batch", json={"urls": urls})
        assert answer.status_code == 422
        assert "at most 2" in answer.text
        files = [("files", ("a.jpg", jpeg(), "image/jpeg"))] * 3
        answer = await client.post("/predict/batch", files=files)
        assert answer.status_code == 422, answer.text
        assert (await client.post("/predict/batch", json={"urls": []})).status_code == 422


async def test_labels_file_overrides_the_model_classes(session_model_server, tmp_path):
    names = [f"label-{i}" for i in range(10)]
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n")
    settings = settings_for(session_model_server, labels=str(tmp_path / "labels.txt"))
    async with gateway_client(settings) as client:
        data = jpeg()
        answer = await client.post("/predict", files={"file": ("a.jpg", data, "image/jpeg")})
        assert answer.status_code == 200, answer.text
        want = dict(zip(names, expected(data).values(), strict=True))
        assert answer.json()["label"] == max(want, key=want.__getitem__)
        assert set(answer.json()["predictions"]) == set(names)


async def test_wrong_number_of_labels_is_a_model_error(session_model_server, tmp_path):
    (tmp_path / "labels.txt").write_text("a\nb\n")
    settings = settings_for(session_model_server, labels=str(tmp_path / "labels.txt"))
    async with gateway_client(settings) as client:
        answer = await client.post(
            "/predict", json={"image_b64": base64.b64encode(jpeg()).decode()}
        )
        assert answer.status_code == 502
        assert "2 class names" in answer.text


async def test_health_readiness_metrics_and_docs(gateway, image_server):
    assert (await gateway.get("/healthz")).json() == {"status": "ok"}
    ready = await gateway.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model": {"name": "clothing-model", "version": 1}}
    await gateway.post("/predict", json={"url": image_server.url("/red.jpg")})
    await gateway.post("/predict", json={"url": image_server.url("/text")})
    metrics = (await gateway.get("/metrics")).text
    assert 'gateway_requests_total{route="/predict",status="200"} 1.0' in metrics
    assert 'gateway_requests_total{route="/predict",status="400"} 1.0' in metrics
    assert 'gateway_stage_duration_seconds_count{stage="fetch"} 2.0' in metrics
    assert 'gateway_images_total{outcome="ok"} 1.0' in metrics
    assert "gateway_fetched_bytes_total" in metrics
    schema = (await gateway.get("/openapi.json")).json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert "examples" in body["application/json"]["schema"]
    docs_page = await gateway.get("/docs")
    assert docs_page.status_code == 200
    assert "cdn" not in docs_page.text.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/docs/assets/{asset}" in docs_page.text
        assert (await gateway.get(f"/docs/assets/{asset}")).status_code == 200
    missing = await gateway.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


async def test_web_page_and_assets_are_served(gateway):
    page = await gateway.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert (await gateway.get(asset)).status_code == 200
    assert "http://" not in page.text.replace("http://example", "")
    assert "https://" not in page.text.replace("https://example", "")


def test_importing_the_gateway_does_not_import_heavy_runtimes():
    code = (
        "import sys, clothing.gateway.app, clothing.gateway.cli, clothing.cli;"
        "clothing.cli.build_parser();"
        "heavy = {'onnxruntime', 'torch', 'tensorflow'} & set(sys.modules);"
        "print(sorted(heavy)); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_row_sum_is_one():
    scores = reference_probabilities(np.zeros((1, 32, 32, 3), np.uint8))
    assert scores.sum() == pytest.approx(1.0, abs=1e-5)


async def test_request_body_over_the_cap_is_refused(session_model_server):
    settings = settings_for(session_model_server, max_batch=1, max_image_bytes=1000)
    huge = b'{"image_b64": "' + b"A" * (2 * 1024 * 1024) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    async with gateway_client(settings) as client:
        headers = {"Content-Type": "application/json"}
        announced = await client.post("/predict", content=huge, headers=headers)
        assert announced.status_code == 413
        streamed = await client.post("/predict", content=chunks(), headers=headers)
        assert streamed.status_code == 413
        assert streamed.json()["error"]["code"] == "too_large"
        metrics = (await client.get("/metrics")).text
        assert 'gateway_requests_total{route="/predict",status="413"} 2.0' in metrics
