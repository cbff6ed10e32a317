"""A stand-in for the cluster on loopback: three model servers behind one gateway.

What the Kubernetes manifests rely on, checked with the real processes: the
gateway balances gRPC calls over every model server it is given (what the
headless Service plus ``dns:///`` gives it in a cluster), a server killed
mid-load costs no client request (the gateway retries on UNAVAILABLE), and a
server started again on the same address takes traffic again.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clothing.processes import free_port, stop_process, wait_ready
from tests.fixtures import build_test_model, model_server_command, run_gateway
from tests.images import b64, noise_png

pytestmark = pytest.mark.slow

CONCURRENCY = 6


@dataclass
class Backend:
    """A model-server process on fixed ports, so it can come back at the same address."""

    model_dir: Path
    grpc_port: int
    rest_port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def start(self) -> None:
        command = model_server_command(
            self.grpc_port,
            self.rest_port,
            "--model_name=clothing-model",
            f"--model_base_path={self.model_dir}",
            "--shutdown_grace_seconds=2",
            # As deployed: connections are recycled so clients re-resolve.
            "--grpc_channel_arguments=grpc.max_connection_age_ms=30000,"
            "grpc.max_connection_age_grace_ms=10000",
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_ready(f"{self.rest_url}/readyz", self.process, 60.0)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 15)

    def grpc_predicts(self) -> float:
        """Predict calls this process has answered over gRPC, by its own /metrics."""
        text = httpx.get(f"{self.rest_url}/metrics", timeout=5.0).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "model_server_requests_total" and (
                    sample.labels.get("transport") == "grpc"
                ):
                    total += sample.value
        return total


@contextlib.contextmanager
def backends(count: int, root: Path) -> Iterator[list[Backend]]:
    model_dir = root / "clothing-model"
    build_test_model(model_dir / "1")
    started = [
        Backend(model_dir, free_port(), free_port(), root / f"server-{index}.log")
        for index in range(count)
    ]
    try:
        for backend in started:
            backend.start()
        yield started
    except BaseException:
        for backend in started:
            sys.stderr.write(backend.log_path.read_text(errors="replace"))
        raise
    finally:
        for backend in started:
            backend.stop()


def _photo_body() -> dict[str, str]:
    return {"image_b64": b64(noise_png(7, (32, 32)))}


def _load(url: str, count: int, on_progress: dict[int, object] | None = None) -> list[str]:
    """Send ``count`` predictions with CONCURRENCY clients; return every failure."""
    body = _photo_body()
    actions = on_progress or {}

    def one(index: int, client: httpx.Client) -> str | None:
        action = actions.get(index)
        if callable(action):
            action()
        response = client.post(f"{url}/predict", json=body)
        if response.status_code != 200 or "label" not in response.json():
            return f"{response.status_code} {response.text[:200]}"
        return None

    with httpx.Client(timeout=30.0) as client, ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(lambda i: one(i, client), range(count)))
    return [failure for failure in results if failure is not None]


def test_calls_spread_survive_a_killed_server_and_return_to_it() -> None:
    with tempfile.TemporaryDirectory(prefix="loopback-cluster-") as temp:
        root = Path(temp)
        with backends(3, root) as servers:
            host = ",".join(server.grpc_address for server in servers)
            # The machine may be busy with other work; a slow answer is not what is tested.
            # One client sends all the load: its rate limit is not what is tested here.
            with run_gateway(
                host, "--workers=1", "--grpc-deadline=20", "--rate-limit=0"
            ) as gateway:
                url = gateway.url
                # 1. Under load, every server answers a share.
                assert _load(url, 150) == []
                shares = [server.grpc_predicts() for server in servers]
                assert sum(shares) >= 150
                for share in shares:
                    assert share >= 150 / len(servers) / 3, shares

                # 2. One server is killed mid-load: no request fails.
                victim = servers[1]
                failures = _load(url, 200, {60: victim.kill})
                assert victim.process is not None
                assert victim.process.returncode == -signal.SIGKILL
                assert failures == []

                # 3. Started again at the same address, it takes traffic again.
                victim.start()
                assert victim.grpc_predicts() == 0
                deadline = time.monotonic() + 30.0
                while victim.grpc_predicts() == 0 and time.monotonic() < deadline:
                    assert _load(url, 30) == []
                assert victim.grpc_predicts() > 0
