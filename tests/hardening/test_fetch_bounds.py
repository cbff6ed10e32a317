"""The gateway as an amplifier against third parties: public image hosts only on ports
80 and 443, and one request's URLs share one download budget."""

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
from tests.fixtures import ModelServerProcess, raw_tcp_server
from tests.images import noise_png

PUBLIC = "93.184.216.34"  # never contacted: the opener below records instead of connecting


async def _resolve(host: str, port: int) -> list[IPAddress]:
    return [ipaddress.ip_address("127.0.0.1" if host == "127.0.0.1" else PUBLIC)]


async def _post(settings: GatewaySettings, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    app = create_app(settings, resolver=_resolve, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.post(path, json=body, timeout=60)


async def test_public_hosts_are_fetched_on_ports_80_and_443_only(
    module_model_server: ModelServerProcess,
) -> None:
    attempts: list[tuple[str, int]] = []

    async def recording(address: str, port: int, **kwargs: object) -> Any:
        attempts.append((address, port))
        raise ConnectionRefusedError("recorded, not connected")

    settings = GatewaySettings(tf_serving_host=module_model_server.grpc_address, metrics_port=0)
    client = HttpGetter(open_connection=recording)
    answers = {}
    for port in (22, 6379, 8080, 80, 443):
        scheme = "https" if port == 443 else "http"
        url = f"{scheme}://images.example:{port}/a.png"
        answer = await _post(settings, "/predict", {"url": url}, image_client=client)
        answers[port] = answer.status_code
    print(f"status by port: {answers}; connections attempted: {attempts}")
    assert answers == {22: 403, 6379: 403, 8080: 403, 80: 502, 443: 502}
    assert [port for _, port in attempts] == [80, 443]


BIG = noise_png(0, (1000, 1000))  # about 3 MB, incompressible


@pytest.fixture
async def image_host() -> AsyncIterator[tuple[int, list[int]]]:
    sent: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BIG)}\r\n\r\n".encode()
        writer.write(head + BIG)
        await writer.drain()
        sent.append(len(BIG))

    async with raw_tcp_server(serve) as port:
        yield port, sent


async def test_a_batchs_urls_share_one_download_budget(
    module_model_server: ModelServerProcess, image_host: tuple[int, list[int]]
) -> None:
    port, _ = image_host
    settings = GatewaySettings(
        tf_serving_host=module_model_server.grpc_address,
        allow_hosts=(f"127.0.0.1:{port}",),
        metrics_port=0,
        max_batch=16,
    )
    url = f"http://127.0.0.1:{port}/big.png"
    single = await _post(settings, "/predict", {"url": url})
    batch = await _post(settings, "/predict/batch", {"urls": [url] * 16})
    codes = [item.get("error", {}).get("code", "ok") for item in batch.json()["results"]]
    print(
        f"one {len(BIG)}-byte image: {single.status_code}; 16 of them in a batch: {codes[0]} x "
        f"{codes.count(codes[0])} (budget {settings.max_fetch_bytes // 16} bytes each)"
    )
    assert single.status_code == 200, single.text
    assert batch.status_code == 200
    # 16 x 3 MB would be 48 MB fetched for one request; each share is 2.5 MiB.
    assert codes == ["too_large"] * 16
