"""Session fixtures: both images built once from their Dockerfiles, removed at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import engine


@pytest.fixture(scope="session")
def images() -> Iterator[dict[str, str]]:
    """Tier name -> tag of its image, built with the classic builder as a user would."""
    engine.require_engine()
    built: dict[str, str] = {}
    try:
        for name in engine.DOCKERFILES:
            built[name] = engine.build_image(name)
        yield built
    finally:
        for tag in built.values():
            engine.docker("rmi", "--force", tag, check=False)
