"""SSRF through the whole gateway app, DNS rebinding included.

The gateway runs in-process with an injected resolver and a recording
connection opener: nothing leaves the machine, and the opener records every
address the gateway connected to, so the tests can prove that a refused URL
was never requested.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from clothing.gateway.addresses import IPAddress, resolve_with_getaddrinfo
from clothing.gateway.app import create_app
from clothing.gateway.http_get import HttpGetter
from clothing.gateway.settings import GatewaySettings
from tests.fixtures import ModelServerProcess
from tests.images import noise_png

from . import bombs

PUBLIC = "93.184.216.34"  # never contacted: the recorder answers instead
IMAGE = noise_png()


class FakeDns:
    """Names answer from a script (one list per lookup); numeric hosts resolve locally."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        if host in self.answers:
            script = self.answers[host]
            current = script.pop(0) if len(script) > 1 else script[0]
            return [ipaddress.ip_address(a) for a in current]
        # Numeric spellings only (2130706433, 0x7f000001, [::1]): no network lookup.
        return await resolve_with_getaddrinfo(host, port)


class Recorder:
    """The outbound side: records (connected-to address, Host header, path).

    Its ``open_connection`` is the gateway's connection opener: it notes the
    address the gateway asked for and connects to a local answering server
    instead, so nothing leaves the machine.
    """

    def __init__(self, redirects: dict[str, str] | None = None) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self.redirects = redirects or {}
        self._asked: list[str] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Recorder:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def open_connection(
        self, host: str, port: int, **options: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        assert self._server is not None
        self._asked.append(host)
        local_port = self._server.sockets[0].getsockname()[1]
        return await asyncio.open_connection("127.0.0.1", local_port, limit=options["limit"])

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = (await reader.readline()).decode().split(" ")[1]
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        self.seen.append((self._asked.pop(0), headers["host"], path))
        if path in self.redirects:
            head = f"HTTP/1.1 302 Found\r\nLocation: {self.redirects[path]}\r\n"
            writer.write(f"{head}Content-Length: 0\r\n\r\n".encode())
        else:
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(IMAGE)}\r\n\r\n".encode())
            writer.write(IMAGE)
        await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def _gateway(
    server: ModelServerProcess, dns: FakeDns, recorder: Recorder
) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(tf_serving_host=server.grpc_address, ready_cache_seconds=0.0)
    outbound = HttpGetter(open_connection=recorder.open_connection)
    app = create_app(settings, image_client=outbound, resolver=dns)
    async with recorder, app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


REFUSED = [
    ("file:///etc/passwd", 403),
    ("gopher://127.0.0.1:70/", 403),
    ("ftp://example.test/a.png", 403),
    ("http://user:secret@example.test/a.png", 400),
    ("http://127.0.0.1/a.png", 403),
    ("http://127.1/a.png", 403),
    ("http://2130706433/a.png", 403),
    ("http://0x7f000001/a.png", 403),
    ("http://0.0.0.0/a.png", 403),
    ("http://[::1]/a.png", 403),
    ("http://[::]/a.png", 403),
    ("http://[::ffff:127.0.0.1]/a.png", 403),
    ("http://[64:ff9b::a9fe:a9fe]/a.png", 403),  # NAT64 of 169.254.169.254
    ("http://[2002:7f00:1::]/a.png", 403),  # 6to4 of 127.0.0.1
    ("http://[fe80::1]/a.png", 403),
    ("http://[fc00::1]/a.png", 403),
    ("http://169.254.169.254/latest/meta-data/", 403),
    ("http://169.254.170.2/v2/credentials", 403),
    ("http://100.100.100.200/latest/meta-data/", 403),
    ("http://10.1.2.3/a.png", 403),
    ("http://172.16.0.1/a.png", 403),
    ("http://192.168.1.1/a.png", 403),
    ("http://100.64.0.1/a.png", 403),
    ("http://224.0.0.1/a.png", 403),
    ("http://metadata.test/computeMetadata/v1/", 403),
    ("http://mixed.test/a.png", 403),
    ("http://internal.test/a.png", 403),
]
DNS = {
    "metadata.test": [["169.254.169.254"]],
    "mixed.test": [[PUBLIC, "127.0.0.1"]],  # one good record and one bad: refused
    "internal.test": [["10.0.0.7"]],
    "example.test": [[PUBLIC]],
}


@pytest.mark.parametrize(("url", "status"), REFUSED)
async def test_refused_urls_are_never_requested(
    module_model_server: ModelServerProcess, url: str, status: int
) -> None:
    recorder = Recorder()
    dns = FakeDns({name: [list(a) for a in answers] for name, answers in DNS.items()})
    async with _gateway(module_model_server, dns, recorder) as client:
        answer = await client.post("/predict", json={"url": url})
    assert answer.status_code == status, (url, answer.text)
    assert answer.json()["error"]["code"] in ("address_refused", "bad_request")
    assert recorder.seen == []


async def test_dns_rebinding_cannot_swap_the_address(
    module_model_server: ModelServerProcess,
) -> None:
    # First lookup public, every later one loopback: the classic rebinding attack.
    dns = FakeDns({"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
    recorder = Recorder()
    async with _gateway(module_model_server, dns, recorder) as client:
        answer = await client.post("/predict", json={"url": "http://rebind.test/a.png"})
    assert answer.status_code == 200, answer.text
    # One lookup, and the connection went to the address that was checked.
    assert dns.lookups == ["rebind.test"]
    assert recorder.seen == [(PUBLIC, "rebind.test", "/a.png")]


async def test_rebinding_on_a_redirect_hop_is_refused(
    module_model_server: ModelServerProcess,
) -> None:
    dns = FakeDns({"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
    recorder = Recorder(redirects={"/a.png": "http://rebind.test/b.png"})
    async with _gateway(module_model_server, dns, recorder) as client:
        answer = await client.post("/predict", json={"url": "http://rebind.test/a.png"})
    assert answer.status_code == 403, answer.text
    assert dns.lookups == ["rebind.test", "rebind.test"]
    assert recorder.seen == [(PUBLIC, "rebind.test", "/a.png")]


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://127.0.0.1:8500/",
        "http://[::ffff:10.0.0.1]/",
        "file:///etc/passwd",
        "http://internal.test/x.png",
    ],
)
async def test_redirects_into_the_private_network_are_refused(
    module_model_server: ModelServerProcess, location: str
) -> None:
    dns = FakeDns({"example.test": [[PUBLIC]], "internal.test": [["10.0.0.7"]]})
    recorder = Recorder(redirects={"/a.png": location})
    async with _gateway(module_model_server, dns, recorder) as client:
        answer = await client.post("/predict", json={"url": "http://example.test/a.png"})
    assert answer.status_code == 403, answer.text
    assert recorder.seen == [(PUBLIC, "example.test", "/a.png")]


@pytest.mark.parametrize("kind", sorted(bombs.BOMBS))
async def test_bombs_through_the_gateway_are_413(
    module_model_server: ModelServerProcess, kind: str
) -> None:
    payload = base64.b64encode(bombs.BOMBS[kind]()).decode()
    async with _gateway(module_model_server, FakeDns({}), Recorder()) as client:
        answer = await client.post("/predict", json={"image_b64": payload})
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "too_large"
