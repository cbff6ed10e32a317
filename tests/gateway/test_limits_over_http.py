"""The body cap and the in-flight limit against a real ``clothing gateway`` (uvicorn)
process, over raw sockets: bodies arrive in pieces, slowly, as they do from real
clients, not as one message the way an in-process transport hands them over.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from clothing.gateway.settings import GatewaySettings
from tests.fixtures import GatewayProcess, ModelServerProcess, raw_tcp_server, run_gateway
from tests.hardening.helpers import wait_until
from tests.images import jpeg

MAX_IMAGE_BYTES = 1000
# The gateway's cap on a /predict body: one base64 image plus room for the JSON.
MAX_BODY = GatewaySettings(max_image_bytes=MAX_IMAGE_BYTES).max_body_bytes
PIECE = 64 * 1024
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def capped_gateway(session_model_server: ModelServerProcess) -> Iterator[GatewayProcess]:
    with run_gateway(
        session_model_server.grpc_address,
        "--max-batch=1",
        f"--max-image-bytes={MAX_IMAGE_BYTES}",
        "--max-inflight=2",
        "--ready-cache-seconds=0",
        "--allow-hosts=127.0.0.1",
        "--fetch-ports=1-65535",
    ) as gateway:
        yield gateway


@contextlib.asynccontextmanager
async def connection(
    gateway: GatewayProcess,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def request_head(headers: dict[str, str]) -> bytes:
    lines = ["POST /predict HTTP/1.1", "Host: gateway", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 30)
    return int(status_line.split()[1]), headers, body


def status_count(gateway: GatewayProcess, status: int) -> float:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    wanted = f'gateway_requests_total{{route="/predict",status="{status}"}} '
    for line in text.splitlines():
        if line.startswith(wanted):
            return float(line.split()[-1])
    return 0.0


async def test_a_body_announced_over_the_cap_is_refused_before_it_is_sent(
    capped_gateway: GatewayProcess,
) -> None:
    async with connection(capped_gateway) as (reader, writer):
        writer.write(request_head({"Content-Length": str(MAX_BODY + 1)}))
        await writer.drain()
        status, headers, body = await read_answer(reader)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "too_large"
    assert headers["content-type"] == "application/json"


async def test_a_chunked_body_is_cut_off_once_it_passes_the_cap(
    capped_gateway: GatewayProcess,
) -> None:
    """Pieces trickle in with no length announced; the answer comes before the end."""
    total = 16 * MAX_BODY  # more than loopback's socket buffers can swallow unread
    sent = 0
    before = status_count(capped_gateway, 413)
    async with connection(capped_gateway) as (reader, writer):
        writer.write(request_head({"Transfer-Encoding": "chunked"}))
        answer = asyncio.ensure_future(read_answer(reader))
        first = b'{"image_b64": "'
        try:
            while sent < total and not answer.done():
                piece = first if sent == 0 else b"A" * PIECE
                writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                await writer.drain()
                sent += len(piece)
                await asyncio.sleep(0.005)  # arrive in separate reads, as over a network
        except ConnectionError:
            pass  # the gateway may close the connection once it has answered
        status, _, body = await answer
    assert status == 413
    assert json.loads(body)["error"]["code"] == "too_large"
    assert MAX_BODY < sent < total, "refused once past the cap, not after the whole body"
    assert status_count(capped_gateway, 413) == before + 1
    # Everyone else is still served.
    small = base64.b64encode(jpeg(size=(8, 8))).decode()
    async with httpx.AsyncClient(base_url=capped_gateway.url, timeout=30) as client:
        answer_ok = await client.post("/predict", json={"image_b64": small})
    assert answer_ok.status_code == 200, answer_ok.text


async def test_past_the_inflight_limit_a_request_gets_429_at_once(
    capped_gateway: GatewayProcess,
) -> None:
    """Two requests held while their image downloads fill the limit of 2; a third is
    refused, then served. (A request whose body has not arrived holds no slot.)"""
    body = json.dumps({"image_b64": base64.b64encode(jpeg(size=(8, 8))).decode()})
    payload = body.encode()
    image = jpeg(size=(8, 8))
    arrived = asyncio.Semaphore(0)
    release = asyncio.Event()

    async def stalled_host(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        arrived.release()
        await release.wait()
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(image)}\r\n\r\n".encode()
        writer.write(head + image)
        await writer.drain()

    async with (
        raw_tcp_server(stalled_host) as port,
        httpx.AsyncClient(base_url=capped_gateway.url, timeout=30) as client,
    ):
        url = {"url": f"http://127.0.0.1:{port}/a.jpg"}
        held = [asyncio.ensure_future(client.post("/predict", json=url)) for _ in range(2)]
        async with asyncio.timeout(30):
            for _ in held:
                await arrived.acquire()  # both downloads have started: both slots taken
        refused = await client.post("/predict", content=payload, headers=JSON)
        assert refused.status_code == 429, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "overloaded"
        release.set()
        for answer in await asyncio.gather(*held):
            assert answer.status_code == 200, answer.text
        # The held requests are done: the limit frees up.
        after = await client.post("/predict", content=payload, headers=JSON)
        assert after.status_code == 200, after.text
    wait_until(lambda: status_count(capped_gateway, 429) >= 1, timeout=10)
