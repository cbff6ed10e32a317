"""What the tests need from the machine: the labelled photos and outside tools.

Every test that depends on something outside the repository asks for it here, so
one rule decides what a missing piece means. On a developer's machine it is a
skip that says what to install. In CI (``CI=true``, or ``CLOTHING_TESTS_STRICT=1``
which ``.ci/run`` sets) it is a failure: CI installs everything, so a missing
piece is a broken set-up, not a reason to test less. ``tests/conftest.py`` also
fails a strict run that skipped anything at all.

The dataset is found the way the ``Makefile`` finds it: ``CLOTHING_DATA`` (``make
test`` passes its ``DATA``), else ``../shared/datasets/clothing-small``; a relative
path is taken from the repository root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]
STRICT_VARIABLE = "CLOTHING_TESTS_STRICT"
DATA_VARIABLE = "CLOTHING_DATA"
DEFAULT_DATA = "../shared/datasets/clothing-small"

_TRUE = {"1", "true", "yes", "on"}


def strict() -> bool:
    """True where nothing may be skipped for want of a tool or data (CI)."""
    flag = os.environ.get(STRICT_VARIABLE, "").strip().lower()
    if flag:
        return flag in _TRUE
    return os.environ.get("CI", "").strip().lower() in _TRUE


def missing(what: str) -> NoReturn:
    """Skip for ``what`` is missing, or fail where the run is strict."""
    if strict():
        pytest.fail(f"{what} (a strict run installs everything: see .ci/run)", pytrace=False)
    pytest.skip(what)


def require(available: bool, what: str) -> None:
    if not available:
        missing(what)


def tool(name: str, install: str) -> str:
    """The path of command ``name``, the virtualenv's own first.

    ``install`` says how to get it, for the skip or failure message.
    """
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        missing(f"{name} is not installed ({install})")
    return found


def kubectl() -> str:
    """kubectl with a built-in kustomize v5, the reference the tests' renderer is held to."""
    found = tool("kubectl", "kubectl 1.27 or newer, for its built-in kustomize v5")
    version = subprocess.run(
        [found, "version", "--client"], check=False, capture_output=True, text=True, timeout=60
    ).stdout
    built_in = re.search(r"Kustomize Version: v(\d+)", version)
    require(
        built_in is not None and int(built_in[1]) >= 5,
        f"{found} has no kustomize v5 built in (kubectl 1.27 or newer has): {version.strip()}",
    )
    return found


def dataset_path() -> Path:
    """Where the labelled photos should be, present or not."""
    path = Path(os.environ.get(DATA_VARIABLE) or DEFAULT_DATA).expanduser()
    return path if path.is_absolute() else (ROOT / path).resolve()


def dataset_present() -> bool:
    path = dataset_path()
    return (path / "train").is_dir() and (path / "validation").is_dir()


def dataset() -> Path:
    """The labelled photos (``train/`` and ``validation/``), or skip/fail."""
    require(
        dataset_present(),
        f"no labelled photos at {dataset_path()} (set {DATA_VARIABLE} or make test DATA=...)",
    )
    return dataset_path()
