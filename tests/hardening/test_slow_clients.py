"""Clients that open a request and then stall, against a real gateway process: they hold
no in-flight slot, so everyone else is still served, and they are cut off at the body
deadline."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures import GatewayProcess, build_test_model, run_gateway, run_model_server
from tests.images import noise_png

from .payloads import stalled_request_head

BODY_TIMEOUT = 3.0
STALLED = 64  # the gateway's default --max-inflight


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    base = tmp_path_factory.mktemp("slow") / "clothing-model"
    build_test_model(base / "1")
    with (
        run_model_server(base) as model_server,
        run_gateway(model_server.grpc_address, f"--body-timeout={BODY_TIMEOUT}") as running,
    ):
        yield running


def test_stalled_bodies_do_not_take_the_in_flight_slots(gateway: GatewayProcess) -> None:
    with contextlib.ExitStack() as stack:
        sockets = []
        for _ in range(STALLED):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", gateway.port)))
            sock.sendall(stalled_request_head("/predict", 1000))
            sockets.append(sock)
        time.sleep(0.5)  # every stalled request has reached the app
        started = time.monotonic()
        answer = httpx.post(f"{gateway.url}/predict", files={"file": noise_png()}, timeout=30)
        elapsed = time.monotonic() - started
        print(f"/predict beside {STALLED} stalled bodies: {answer.status_code} in {elapsed:.2f} s")
        assert answer.status_code == 200, answer.text
        # Each stalled client is answered 408 at the deadline, and its connection closed.
        sockets[0].settimeout(BODY_TIMEOUT + 10)
        reply = sockets[0].recv(4096)
        waited = time.monotonic() - started
        status_line = reply.split(b"\r\n", 1)[0].decode()
        print(f"stalled client: {status_line} after {waited:.1f} s")
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
