"""What the public learns from the gateway: uniform refusals (details only in the log),
metrics on a port of their own, security headers on the page, and a clean per-URL error
for a malformed redirect or host name."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from clothing.gateway.addresses import IPAddress
from clothing.gateway.app import create_app
from clothing.gateway.http_get import HttpGetter
from clothing.gateway.settings import GatewaySettings
from clothing.processes import free_port
from tests.fixtures import EVERY_PORT, ModelServerProcess, raw_tcp_server, run_gateway
from tests.images import noise_png

from .payloads import image_response, redirect_to

INTERNAL = {"kubernetes.default.svc": "10.96.0.1", "metadata.test": "169.254.169.254"}


async def _resolve(host: str, port: int) -> list[IPAddress]:
    return [ipaddress.ip_address(INTERNAL.get(host, "127.0.0.1"))]


async def _host(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    path = (await reader.readline()).decode().split(" ")[1]
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    writer.write(redirect_to("http://[::1") if path == "/bad-location" else image_response())
    await writer.drain()


def _client(settings: GatewaySettings, **kwargs: Any) -> Any:
    app = create_app(settings, resolver=_resolve, **kwargs)

    class _Running:
        async def __aenter__(self) -> httpx.AsyncClient:
            self.lifespan = app.router.lifespan_context(app)
            await self.lifespan.__aenter__()
            transport = httpx.ASGITransport(app=app)
            self.client = httpx.AsyncClient(transport=transport, base_url="http://gateway")
            return self.client

        async def __aexit__(self, *exc: object) -> None:
            await self.client.aclose()
            await self.lifespan.__aexit__(None, None, None)

    return _Running()


@pytest.fixture
async def image_host() -> AsyncIterator[int]:
    async with raw_tcp_server(_host) as port:
        yield port


def _settings(server: ModelServerProcess, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "tf_serving_host": server.grpc_address,
        "allow_hosts": ("127.0.0.1",),
        "fetch_ports": EVERY_PORT,
        "fetch_timeout": 3.0,
        "fetch_connect_timeout": 0.3,
    }
    values.update(overrides)
    return GatewaySettings(**values)


async def test_a_refused_internal_name_does_not_reveal_its_address(
    module_model_server: ModelServerProcess,
) -> None:
    async with _client(_settings(module_model_server)) as client:
        for host, address in INTERNAL.items():
            answer = await client.post("/predict", json={"url": f"http://{host}/"})
            print(f"http://{host}/: {answer.status_code} {answer.json()['error']['message']}")
            assert answer.status_code == 403
            message = answer.json()["error"]["message"]
            assert address not in message
            # The same words for a cluster address and a metadata endpoint.
            assert message == f"image host {host!r} is refused: not a public address"


async def test_a_closed_port_and_a_silent_one_look_the_same(
    module_model_server: ModelServerProcess,
) -> None:
    async def never_connects(*args: object, **kwargs: object) -> Any:
        await asyncio.sleep(30)

    closed = free_port()
    answers = []
    for client_kwargs in (
        {},
        {"image_client": HttpGetter(connect_timeout=0.3, open_connection=never_connects)},
    ):
        async with _client(_settings(module_model_server), **client_kwargs) as client:
            answer = await client.post("/predict", json={"url": f"http://127.0.0.1:{closed}/a.png"})
            error = answer.json()["error"]
            error.pop("request_id")  # each request's own
            answers.append((answer.status_code, error))
    print(f"closed port: {answers[0]}; connect timeout: {answers[1]}")
    assert answers[0] == answers[1]
    assert answers[0][0] == 502


async def test_model_server_details_stay_in_the_log() -> None:
    closed = free_port()
    settings = GatewaySettings(tf_serving_host=f"127.0.0.1:{closed}", grpc_deadline=2.0)
    async with _client(settings) as client:
        answer = await client.post("/predict", files={"file": noise_png()})
    message = answer.json()["error"]["message"]
    print(f"model server down: {answer.status_code} {message}")
    assert answer.status_code == 503
    assert "127.0.0.1" not in message
    assert str(closed) not in message


async def test_a_malformed_redirect_or_host_fails_only_its_item(
    module_model_server: ModelServerProcess, image_host: int
) -> None:
    base = f"http://127.0.0.1:{image_host}"
    async with _client(_settings(module_model_server)) as client:
        redirect = await client.post("/predict", json={"url": f"{base}/bad-location"})
        assert redirect.status_code == 502, redirect.text
        idna = await client.post("/predict", json={"url": "http://xn--ls8h-.la/a.png"})
        assert idna.status_code == 400, idna.text
        urls = [f"{base}/ok.png", f"{base}/bad-location", "http://xn--ls8h-.la/a.png"]
        batch = await client.post("/predict/batch", json={"urls": urls})
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    print(f"batch: {[r.get('label') or r['error']['code'] for r in results]}")
    assert "label" in results[0]
    assert [r["error"]["code"] for r in results[1:]] == ["image_host_failed", "bad_request"]


async def test_page_headers(module_model_server: ModelServerProcess) -> None:
    async with _client(_settings(module_model_server)) as client:
        page = await client.get("/")
        refused = await client.post("/predict", json={})
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert refused.headers["x-content-type-options"] == "nosniff"


def test_metrics_are_served_on_their_own_port_only(module_model_server: ModelServerProcess) -> None:
    metrics_port = free_port()
    with run_gateway(module_model_server.grpc_address, f"--metrics-port={metrics_port}") as gateway:
        public = httpx.get(f"{gateway.url}/metrics", timeout=10)
        private = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
    print(f"/metrics: public port {public.status_code}, metrics port {private.status_code}")
    assert public.status_code == 404
    assert private.status_code == 200
    assert "gateway_requests_total" in private.text
