"""What the compose file publishes, and thread pools sized by the container's CPU limit."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from . import engine
from .deployed import deployed

pytestmark = pytest.mark.slow


def rendered_compose() -> dict[str, Any]:
    engine.require_engine()
    return dict(json.loads(engine.docker("compose", "config", "--format", "json").stdout))


def test_compose_publishes_ports_on_loopback_only() -> None:
    """The model server's gRPC port can unload the model: never on the network."""
    services = rendered_compose()["services"]
    published = [
        (name, port) for name, service in services.items() for port in service.get("ports", [])
    ]
    assert published
    for name, port in published:
        assert isinstance(port, dict)
        assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_compose_cpu_limits_are_the_manifests() -> None:
    services = rendered_compose()["services"]
    for name in ("model-server", "gateway"):
        assert float(str(services[name]["cpus"])) == deployed(name).cpu_limit


def test_model_server_sizes_its_threads_from_the_cpu_limit(images: dict[str, str]) -> None:
    cid = engine.docker(
        "run", "--detach", "--cpus", "1", images["model-server"],
    ).stdout.strip()  # fmt: skip
    try:
        pattern = re.compile(r"threads for (\d+) CPU\(s\): predict pool (\d+), "
                             r"ONNX Runtime intra-op (\d+), solo session (\d+)")  # fmt: skip
        engine.wait_for(lambda: bool(pattern.search(engine.logs(cid))), 60, "the threads line")
        match = pattern.search(engine.logs(cid))
        assert match is not None
        # The test machine has more than one core; the container may use one.
        assert match.groups() == ("1", "1", "1", "0")
    finally:
        engine.docker("rm", "--force", cid, check=False)
