"""docker-compose.scale-out.yaml: several model servers behind one name, for real.

Docker's DNS answers the service name with every replica (as a headless Service
does); the gateway dials ``dns:///model-server:8500`` round robin. Under load:
every replica takes a share (each one's own /metrics), one replica killed costs no
request, and a replica added receives traffic within the servers' connection age.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from . import engine, stacks
from .photos import sample_photos

pytestmark = pytest.mark.slow
SCALE_OUT_FILE = engine.ROOT / "docker-compose.scale-out.yaml"
METRICS = (
    "import urllib.request; "
    "print(urllib.request.urlopen('http://127.0.0.1:8501/metrics', timeout=5).read().decode())"
)


def connection_age_seconds() -> float:
    """Max connection age plus its grace, from the scale-out file's server flags."""
    rendered = engine.docker(
        "compose", "-f", str(engine.COMPOSE_FILE), "-f", str(SCALE_OUT_FILE),
        "config", "--format", "json",
    ).stdout  # fmt: skip
    command = json.loads(rendered)["services"]["model-server"]["command"]
    (arguments,) = [arg for arg in command if arg.startswith("--grpc_channel_arguments=")]
    age = re.search(r"grpc\.max_connection_age_ms=(\d+)", arguments)
    grace = re.search(r"grpc\.max_connection_age_grace_ms=(\d+)", arguments)
    assert age, arguments
    assert grace, arguments
    return (int(age.group(1)) + int(grace.group(1))) / 1000


def grpc_predicts(container: str) -> float:
    """Predict calls this replica answered over gRPC, by its own /metrics."""
    text = engine.docker("exec", container, "python", "-c", METRICS).stdout
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "model_server_requests_total" and sample.labels.get("transport") == "grpc"
    )


class Load:
    """Clients posting a photo to the gateway without pause; every non-200 is kept."""

    def __init__(self, url: str, clients: int = 4) -> None:
        photo = sample_photos(per_class=1)[0]
        self.body = {"image_b64": base64.b64encode(photo).decode()}
        self.url, self.sent, self.failures = url, 0, list[str]()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(clients)]

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(f"{self.url}/predict", json=self.body)
                    if response.status_code != 200:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as error:
                    self.failures.append(f"{type(error).__name__}: {error}")
                self.sent += 1

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


@pytest.fixture(scope="module")
def stack(
    images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[engine.ComposeProject]:
    with stacks.compose_stack(
        images,
        tmp_path_factory.mktemp("scale"),
        files=(engine.COMPOSE_FILE, SCALE_OUT_FILE),
        published=("gateway",),
        # All the load comes from one client (this machine): no per-client rate limit.
        environment={"gateway": {"GATEWAY_RATE_LIMIT": "0"}},
    ) as project:
        yield project


def test_spread_kill_and_scale_up_under_load(stack: engine.ComposeProject) -> None:
    replicas = stack.containers("model-server")
    assert len(replicas) == 3
    gateway = f"http://127.0.0.1:{engine.published_port(stack.container('gateway'), 9696)}"
    with Load(gateway) as load:
        # 1. Every replica takes a share.
        engine.wait_for(lambda: load.sent >= 90, 120, "90 requests")
        shares = {cid: grpc_predicts(cid) for cid in replicas}
        assert all(share >= sum(shares.values()) / 3 / 3 for share in shares.values()), shares

        # 2. One replica killed under load: no request fails.
        victim = replicas[1]
        engine.docker("kill", victim)
        sent = load.sent
        engine.wait_for(lambda: load.sent >= sent + 60, 120, "60 requests after the kill")
        assert load.failures == []

        # 3. A replica added under load receives calls within the connection age.
        stack.run("up", "--detach", "--no-recreate", "--wait", "--scale", "model-server=4")
        added = set(stack.containers("model-server")) - set(replicas)
        assert added, "no replica was added"
        started = time.monotonic()
        engine.wait_for(
            lambda: all(grpc_predicts(cid) > 0 for cid in added),
            connection_age_seconds() + 15,
            "calls on the added replica",
        )
        print(f"added replica served after {time.monotonic() - started:.1f} s")
    assert load.failures == [], load.failures[:5]
