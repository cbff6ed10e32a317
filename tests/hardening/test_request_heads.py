"""Request heads on the gateway's port and the model server's REST port, real processes.

uvicorn parses with httptools (installed in both tiers), whose protocol had no cap
on header bytes and no deadline for them. Measured before the fix: 3 MiB of
header fields answered 200 on both ports, and connections trickling one header
line every half second all still open after the wait. Now: 431 at the cap,
and 408 + close once a head is late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures import GatewayProcess, ModelServerProcess, run_gateway

GATEWAY_HEADER_TIMEOUT = 2.0
MODEL_SERVER_HEADER_TIMEOUT = 10.0  # the model server's default (clothing.http_limits)


@pytest.fixture(scope="module")
def gateway(module_model_server: ModelServerProcess) -> Iterator[GatewayProcess]:
    with run_gateway(
        module_model_server.grpc_address, f"--header-timeout={GATEWAY_HEADER_TIMEOUT}"
    ) as running:
        yield running


def _ports(gateway: GatewayProcess, server: ModelServerProcess) -> dict[str, str]:
    return {"gateway": f"{gateway.url}/healthz", "model server": f"{server.rest_url}/healthz"}


@pytest.mark.parametrize("size", [20 * 1024, 3 * 1024 * 1024])
def test_oversized_heads_get_431(
    gateway: GatewayProcess, module_model_server: ModelServerProcess, size: int
) -> None:
    headers = {f"x-filler-{i}": "v" * 1000 for i in range(size // 1000)}
    for name, url in _ports(gateway, module_model_server).items():
        try:
            status = httpx.get(url, headers=headers, timeout=10).status_code
        except httpx.HTTPError as error:  # closed while still sending: refused too
            status = type(error).__name__  # type: ignore[assignment]
        print(f"{name}: {size // 1024} KiB of header fields -> {status}")
        assert status in (431, "WriteError", "RemoteProtocolError"), status
        assert httpx.get(url, timeout=5).status_code == 200


async def _trickle(port: int, opened: list[float], closed: list[float]) -> None:
    """Sends a header line every 0.5 s until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened.append(time.monotonic())
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for i in range(200):
            await writer.drain()
            if reader.at_eof():
                break
            try:
                if await asyncio.wait_for(reader.read(1024), 0.5):
                    break  # an answer (408) came: the server ends it
            except TimeoutError:
                writer.write(b"x-slow-%d: y\r\n" % i)
        closed.append(time.monotonic())
    except ConnectionError:
        closed.append(time.monotonic())
    finally:
        writer.close()


async def test_heads_that_trickle_are_cut_at_the_deadline(
    gateway: GatewayProcess, module_model_server: ModelServerProcess
) -> None:
    targets = {
        "gateway": (gateway.port, GATEWAY_HEADER_TIMEOUT),
        "model server": (module_model_server.rest_port, MODEL_SERVER_HEADER_TIMEOUT),
    }
    results: dict[str, tuple[list[float], list[float]]] = {}
    tasks = []
    for name, (port, _) in targets.items():
        opened: list[float] = []
        closed: list[float] = []
        results[name] = (opened, closed)
        tasks += [_trickle(port, opened, closed) for _ in range(20)]
    runs = [asyncio.ensure_future(task) for task in tasks]
    await asyncio.wait(runs, timeout=MODEL_SERVER_HEADER_TIMEOUT + 5)
    for run in runs:
        run.cancel()
    for name, (_, timeout) in targets.items():
        opened, closed = results[name]
        lasted = [end - start for start, end in zip(opened, closed, strict=False)]
        print(
            f"{name}: {len(closed)} of {len(opened)} trickling connections closed, "
            f"after {max(lasted, default=0):.1f} s at most"
        )
        assert len(closed) == len(opened) == 20
        assert max(lasted) < timeout + 2
    async with httpx.AsyncClient() as client:
        for url in _ports(gateway, module_model_server).values():
            assert (await client.get(url)).status_code == 200
