"""Fresh virtualenvs holding one extra of the project, as a user installs it.

Every call makes a new virtualenv and installs the project's wheel with one extra,
held to the versions of ``requirements/lock.txt``, so a tier that imports something
its extra does not declare fails here. pip's resolver picks what the extra needs,
as it did when ``scripts/lock.py`` wrote each image's share of the lock; the pins
go in as constraints without their hashes (a hash in a constraints file puts pip
in hash-checking mode, which a wheel named with an extra cannot satisfy). What is
slow is downloading and building the dependencies' wheels: they are kept in a
wheelhouse under pytest's cache and the install runs with ``--no-index`` from it;
only when it lacks a pinned wheel is it filled from the package index (``pip
download``) and the install retried. The project's own wheel is built afresh from
the working tree once per session.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "lock.txt"
# What the project's wheel is built from (the rest of the tree is not packaged).
SOURCES = ("pyproject.toml", "README.md", "src")


def build_project_wheel(work: Path) -> Path:
    """The project's wheel, built from a copy of the working tree (so no build/ or
    egg-info lands in it)."""
    source = work / "source"
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(
                origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy(origin, source / name)
    # The running interpreter's setuptools when it has one (Python 3.11's venvs do),
    # else pip fetches the build backend pyproject.toml names.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    _pip(sys.executable, "wheel", "--no-deps", *isolation, "-w", str(work), str(source))
    (wheel,) = work.glob("clothing_classifier-*.whl")
    return wheel


def lock_pins(target: Path) -> Path:
    """The lock's ``name==version`` lines, without hashes, written to ``target``."""
    pins = re.findall(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[^\s\\]+", LOCK.read_text(), re.MULTILINE)
    target.write_text("".join(f"{pin}\n" for pin in pins))
    return target


def create(target: Path, wheel: Path, extra: str, wheelhouse: Path) -> Path:
    """A new virtualenv at ``target`` with ``wheel[extra]`` installed; returns its bin/."""
    venv.create(target, with_pip=True)
    python = str(target / "bin" / "python")
    requirement = f"{wheel}[{extra}]"
    pins = str(lock_pins(target / "pins.txt"))
    offline = ["install", "--no-index", "--find-links", str(wheelhouse), "-c", pins]
    if _pip(python, *offline, requirement, check=False).returncode != 0:
        wheelhouse.mkdir(parents=True, exist_ok=True)
        _pip(python, "download", "-d", str(wheelhouse), "-c", pins, requirement)
        for copy in wheelhouse.glob("clothing_classifier-*"):  # always built afresh
            copy.unlink()
        _pip(python, *offline, requirement)
    return target / "bin"


def clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH, which would let a virtualenv import (and pip
    count as installed) the working tree's sources instead of what was installed."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def installed(bin_dir: Path) -> set[str]:
    """Normalised names of the distributions installed in a virtualenv."""
    listing = _pip(str(bin_dir / "python"), "list", "--format=freeze").stdout
    return {line.split("==")[0].lower().replace("_", "-") for line in listing.splitlines()}


def _pip(python: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [python, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    result = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=900, env=clean_env()
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result
