"""Fixtures the hardening tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures import ModelServerProcess, build_test_model, run_model_server

from .helpers import MODEL


@pytest.fixture(scope="module")
def module_model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServerProcess]:
    """A model server process on the small test model, one per test module."""
    base = tmp_path_factory.mktemp("stand-in") / MODEL
    build_test_model(base / "1")
    with run_model_server(base) as running:
        yield running
