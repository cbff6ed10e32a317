"""Compose projects over the repository's own compose files, run from the images under test.

An override file points each service at the image built by this session and
publishes every port on a free loopback port instead of the fixed ones, so the
project can run beside anything else on the engine; the rest is the shipped file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import yaml

from . import engine

# Container ports of each service that the tests reach from the host.
PORTS = {"model-server": (8500, 8501), "gateway": (9696,)}


def override(
    images: Mapping[str, str],
    published: Sequence[str],
    environment: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """Compose override: the session's images; the ``published`` services' ports on free
    loopback ports; ``environment`` variables added to the services it names."""
    services: dict[str, dict[str, object]] = {name: {"image": tag} for name, tag in images.items()}
    for name in published:
        services[name]["ports"] = [f"127.0.0.1::{port}" for port in PORTS[name]]
    for name, variables in (environment or {}).items():
        services[name]["environment"] = dict(variables)
    document = {"services": services}
    # `!override` replaces the shipped list instead of appending to it.
    return yaml.safe_dump(document).replace("ports:", "ports: !override")


@contextlib.contextmanager
def compose_stack(
    images: Mapping[str, str],
    work: Path,
    *,
    files: Sequence[Path] = (engine.COMPOSE_FILE,),
    published: Sequence[str] = ("model-server", "gateway"),
    up_args: Sequence[str] = (),
    environment: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[engine.ComposeProject]:
    """``docker compose up --wait`` under a unique project name; ``down`` at the end."""
    override_file = work / "compose.override.yaml"
    override_file.write_text(override(images, published, environment))
    project = engine.ComposeProject(
        f"clothing-test-{engine.RUN_ID}-{work.name}".lower(), [*files, override_file]
    )
    try:
        project.run("up", "--wait", "--no-build", "--detach", *up_args, timeout=300)
        yield project
    except BaseException:
        print(project.logs())
        raise
    finally:
        project.down()
