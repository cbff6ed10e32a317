"""The container engine as the tests drive it: the ``docker`` CLI, images, compose projects.

Tests skip, with the reason, where no engine answers; with ``CI=true`` they fail
instead, since CI always sets one up (``.ci/run``) and a silent skip there would
hide that nothing shipped was run.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILES = {
    "model-server": ROOT / "deploy" / "docker" / "model-server.Dockerfile",
    "gateway": ROOT / "deploy" / "docker" / "gateway.Dockerfile",
}
# BuildKit would pull the Dockerfiles' `# syntax=` frontend; the classic builder needs no registry.
BUILD_ENV = {**os.environ, "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0"}
# Names of everything this run creates, so parallel runs on one engine never collide.
RUN_ID = uuid.uuid4().hex[:10]


@functools.cache
def engine_problem() -> str | None:
    """Why no engine can be used here, or None when one answers."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        info = subprocess.run(
            ["docker", "info"], check=False, capture_output=True, text=True, timeout=30
        )
        compose = subprocess.run(
            ["docker", "compose", "version"],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "the docker engine did not answer within 30 s"
    if info.returncode != 0:
        return f"no docker engine answers: {info.stderr.strip()[:200]}"
    if compose.returncode != 0:
        return "the docker compose v2 plugin is not installed"
    return None


def require_engine() -> None:
    problem = engine_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the container tests cannot run: {problem}")
    pytest.skip(f"container tests need a docker engine with compose: {problem}")


def docker(
    *args: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def build_image(name: str) -> str:
    """Build one tier's image from its Dockerfile as docs/deploy.md does; returns its tag."""
    tag = f"clothing-classifier-test-{RUN_ID}/{name}:test"
    docker(
        "build", "-q", "-f", str(DOCKERFILES[name]), "-t", tag, str(ROOT),
        timeout=1800, env=BUILD_ENV,
    )  # fmt: skip
    return tag


def inspect(container: str) -> dict[str, Any]:
    (record,) = json.loads(docker("inspect", container).stdout)
    return dict(record)


def logs(container: str) -> str:
    result = docker("logs", container, check=False)
    return result.stdout + result.stderr


def published_port(container: str, port: int) -> int:
    """The host port (on 127.0.0.1) that a container's ``port`` is published on."""
    line = docker("port", container, f"{port}/tcp").stdout.splitlines()[0]
    return int(line.rsplit(":", 1)[1])


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not within {timeout} s")


@dataclass
class ComposeProject:
    """One ``docker compose`` project with a name of its own, over the given files."""

    name: str
    files: Sequence[Path]

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        options = [arg for path in self.files for arg in ("-f", str(path))]
        result = docker(
            "compose", "-p", self.name, *options, *args,
            timeout=timeout, check=check, env=BUILD_ENV,
        )  # fmt: skip
        return result.stdout

    def container(self, service: str, index: int = 1) -> str:
        """The container id of one replica of a service."""
        ids = self.run("ps", "-a", "-q", service).split()
        names = {cid: inspect(cid)["Name"].lstrip("/") for cid in ids}
        wanted = f"{self.name}-{service}-{index}"
        matches = [cid for cid, name in names.items() if name == wanted]
        if not matches:
            raise LookupError(f"no container {wanted} among {sorted(names.values())}")
        return matches[0]

    def containers(self, service: str) -> list[str]:
        return self.run("ps", "-q", service).split()

    def logs(self) -> str:
        return self.run("logs", "--no-color", check=False)

    def down(self) -> None:
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
