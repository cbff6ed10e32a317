"""The gateway's in-flight limit: past it, 429 + Retry-After at once; 503 carries it too."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter

import httpx
import pytest

from clothing.gateway.app import create_app
from clothing.gateway.settings import GatewaySettings
from clothing.processes import free_port
from tests.fixtures import build_test_model, run_model_server
from tests.images import noise_png

from .helpers import MODEL, percentile

BODY = {"image_b64": base64.b64encode(noise_png()).decode()}


async def _client(
    client: httpx.AsyncClient, until: float, codes: Counter[int], refused: list[float]
) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        answer = await client.post("/predict", json=BODY)
        codes[answer.status_code] += 1
        if answer.status_code == 429:
            refused.append(time.monotonic() - started)
            assert answer.headers["Retry-After"] == "1"
            assert answer.json()["error"]["code"] == "overloaded"
            await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_past_the_inflight_limit_requests_get_429_and_it_recovers(tmp_path) -> None:
    build_test_model(tmp_path / MODEL / "1", slow_ops=8)
    with run_model_server(tmp_path / MODEL) as server:
        settings = GatewaySettings(
            tf_serving_host=server.grpc_address,
            max_inflight=3,
            grpc_deadline=10.0,
            metrics_port=0,
            rate_limit=0,  # one client sends it all: the in-flight limit is what is tested
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gateway", timeout=30
            ) as client:
                codes: Counter[int] = Counter()
                refused: list[float] = []
                until = time.monotonic() + 3.0
                await asyncio.gather(*(_client(client, until, codes, refused) for _ in range(16)))
                assert set(codes) == {200, 429}, codes
                assert percentile(refused, 0.99) < 1.0
                # Load gone: every request is served again.
                calm: Counter[int] = Counter()
                await _client(client, time.monotonic() + 1.0, calm, [])
                assert set(calm) == {200}, calm
                metrics = (await client.get("/metrics")).text
    assert 'status="429"' in metrics
    print(f"gateway overload: {sum(codes.values())} sent, {dict(codes)}")


async def test_model_server_down_is_503_with_retry_after() -> None:
    settings = GatewaySettings(tf_serving_host=f"127.0.0.1:{free_port()}", grpc_deadline=2.0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            started = time.monotonic()
            answer = await client.post("/predict", json=BODY)
            elapsed = time.monotonic() - started
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert elapsed < 2 * settings.grpc_deadline + 1
