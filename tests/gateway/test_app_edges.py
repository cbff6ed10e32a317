"""The gateway's CORS, its plain 500 for the unexpected, and its readiness cache."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from pathlib import Path

import pytest

from clothing.gateway.service import Classifier
from tests.fixtures import ModelServerProcess, run_model_server
from tests.images import jpeg

from .conftest import gateway_client, settings_for

SHOP = "https://shop.example"
BODY = {"image_b64": base64.b64encode(jpeg()).decode()}


async def test_cors_answers_allowed_origins_only(session_model_server: ModelServerProcess) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    async with gateway_client(settings_for(session_model_server, cors_origins=(SHOP,))) as client:
        allowed = await client.options("/predict", headers={"Origin": SHOP, **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == SHOP
        assert "POST" in allowed.headers["access-control-allow-methods"]
        answer = await client.post("/predict", json=BODY, headers={"Origin": SHOP})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == SHOP

        other = "https://elsewhere.example"
        refused = await client.options("/predict", headers={"Origin": other, **preflight})
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        plain = await client.post("/predict", json=BODY, headers={"Origin": other})
        assert "access-control-allow-origin" not in plain.headers


async def test_without_cors_origins_no_cors_headers(
    session_model_server: ModelServerProcess,
) -> None:
    async with gateway_client(settings_for(session_model_server)) as client:
        answer = await client.post("/predict", json=BODY, headers={"Origin": SHOP})
    assert answer.status_code == 200
    assert not any(name.startswith("access-control-") for name in answer.headers)


async def test_an_unexpected_error_is_a_plain_500_and_is_logged(
    session_model_server: ModelServerProcess,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def explode(self: Classifier, item: object) -> None:
        raise RuntimeError("secret detail from deep inside")

    async with gateway_client(settings_for(session_model_server)) as client:
        with monkeypatch.context() as patch, caplog.at_level(logging.ERROR, "clothing.gateway"):
            patch.setattr(Classifier, "classify", explode)
            answer = await client.post("/predict", json=BODY)
        assert answer.status_code == 500
        request_id = answer.headers["x-request-id"]
        assert answer.json() == {
            "error": {"code": "internal", "message": "internal error", "request_id": request_id}
        }
        assert "secret" not in answer.text
        assert "Traceback" not in answer.text
        (record,) = [r for r in caplog.records if "unexpected error" in r.getMessage()]
        assert record.getMessage() == "unexpected error on /predict"
        assert record.exc_info is not None
        assert "secret detail from deep inside" in str(record.exc_info[1])
        # The gateway goes on serving, and counted the 500.
        assert (await client.post("/predict", json=BODY)).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert 'gateway_requests_total{route="/predict",status="500"} 1.0' in metrics


async def test_readiness_is_cached_for_ready_cache_seconds(model_dir: Path) -> None:
    """A cached answer outlives the model server; past the cache, the truth shows."""
    with run_model_server(model_dir) as server:
        async with gateway_client(settings_for(server, ready_cache_seconds=3600.0)) as cached:
            assert (await cached.get("/readyz")).status_code == 200
            server.stop()
            assert (await cached.get("/readyz")).status_code == 200, "answered from the cache"
            async with gateway_client(settings_for(server, ready_cache_seconds=0.5)) as brief:
                assert (await brief.get("/readyz")).status_code == 503
                # The down answer is cached too; once it expires, it is asked again.
                started = time.monotonic()
                with run_model_server(model_dir, extra_args=[f"--port={server.grpc_port}"]):
                    status = (await brief.get("/readyz")).status_code
                    while status != 200:
                        assert time.monotonic() - started < 60, "readiness never came back"
                        await asyncio.sleep(0.05)
                        status = (await brief.get("/readyz")).status_code
