"""The baseline app, in process, on a real ONNX model."""

import base64

import httpx
import pytest

from bench.baseline_app import create_app
from tests.fixtures import CLASSES, build_test_model
from tests.images import b64, jpeg


def _jpeg_b64() -> str:
    return b64(jpeg((10, 200, 30), (120, 90), quality=75))


async def test_baseline_classifies_and_rejects_bad_input(tmp_path):
    build_test_model(tmp_path / "1")
    app = create_app(tmp_path, ["CPUExecutionProvider"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.post("/predict", json={"image_b64": _jpeg_b64()})
        assert answer.status_code == 200
        body = answer.json()
        assert body["class"] in CLASSES
        assert sum(body["predictions"].values()) == pytest.approx(1.0, abs=1e-5)
        bad = await client.post("/predict", json={"image_b64": base64.b64encode(b"no").decode()})
        assert bad.status_code == 400
        assert "cannot decode" in bad.json()["detail"]
        wrong = await client.post("/predict", json={"something": 1})
        assert wrong.status_code == 400
        local = await client.post("/predict", json={"url": "file:///etc/passwd"})
        assert local.status_code == 400
