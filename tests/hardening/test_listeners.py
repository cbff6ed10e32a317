"""What the gateway's listeners accept before any route runs, with a real process.

- The ``Host`` header: a page on a public name re-pointed at the gateway's address
  (DNS rebinding) sends its own name; refused with 400 unless allowed (before: 200).
- The metrics port: connections that say nothing are closed after its timeout
  (before: all still open after the wait).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from clothing.processes import free_port
from tests.fixtures import GatewayProcess, ModelServerProcess, run_gateway

METRICS_TIMEOUT = 5.0  # clothing.gateway.metrics_server.DEFAULT_TIMEOUT


@pytest.fixture(scope="module")
def gateway(module_model_server: ModelServerProcess) -> Iterator[tuple[GatewayProcess, int]]:
    metrics_port = free_port()
    allowed = "classify.example.com,.svc.cluster.local"
    args = [f"--metrics-port={metrics_port}", f"--allowed-hosts={allowed}"]
    with run_gateway(module_model_server.grpc_address, *args) as running:
        yield running, metrics_port


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("rebind.attacker.example:9696", 400),
        ("rebind.attacker.example.", 400),
        ("classify.example.com", 200),
        ("127.0.0.1:9696", 200),
        ("[::1]:9696", 200),
        ("localhost:9696", 200),
        ("gateway:9696", 200),  # a container or Service name
        ("gateway.clothing.svc.cluster.local", 200),
    ],
)
def test_the_host_header_is_checked(
    gateway: tuple[GatewayProcess, int], host: str, status: int
) -> None:
    running, _ = gateway
    answer = httpx.get(f"{running.url}/healthz", headers={"Host": host}, timeout=5)
    print(f"Host: {host} -> {answer.status_code}")
    assert answer.status_code == status, answer.text


def test_silent_connections_to_the_metrics_port_are_closed(
    gateway: tuple[GatewayProcess, int],
) -> None:
    _, port = gateway
    silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(8)]
    time.sleep(METRICS_TIMEOUT + 1.5)
    closed = 0
    for connection in silent:
        connection.settimeout(0.5)
        with contextlib.suppress(TimeoutError, ConnectionError):
            closed += connection.recv(1) == b""
        connection.close()
    print(
        f"8 silent connections to the metrics port: {closed} closed after {METRICS_TIMEOUT + 1.5} s"
    )
    assert closed == 8
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
