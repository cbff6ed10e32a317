"""The lock file pins every distribution with the hash of each of its files, and each
install's share of it (scripts/lock.py) is made of the lock's own lines."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests import environment
from tests.deploy.manifests import ROOT

REQUIREMENTS = ROOT / "requirements"
LOCK = REQUIREMENTS / "lock.txt"
SHARES = {
    "server": ("server",),
    "gateway": ("gateway",),
    "client": ("client",),
    "train": ("train",),
    "convert": ("convert",),
    "run": ("server", "gateway", "client"),
}
BLOCK = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)",
    re.MULTILINE,
)


def _blocks(path: Path) -> dict[str, str]:
    text = path.read_text()
    blocks: dict[str, str] = {canonicalize_name(m[1]): m[0] for m in BLOCK.finditer(text)}
    pins = re.findall(r"^[A-Za-z0-9][^\s=]*==", text, re.MULTILINE)
    assert len(pins) == len(blocks), f"{path.name}: a pin without hashes"
    return blocks


def _find_links() -> set[str]:
    """pip's find-links folders: from the environment and from pip's configuration."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    configured = re.findall(r"find-links='([^']*)'", listing)
    return {f for text in [os.environ.get("PIP_FIND_LINKS", ""), *configured] for f in text.split()}


def test_every_pin_has_hashes() -> None:
    blocks = _blocks(LOCK)
    assert len(blocks) > 100
    for block in blocks.values():
        assert "--hash=sha256:" in block


def test_a_local_build_is_hashed_from_the_file_pip_finds() -> None:
    """torch's +cpu build is not on the package index: its hash is that of the wheel in
    pip's find-links folder, which CI's machine holds too."""
    (torch,) = [b for name, b in _blocks(LOCK).items() if name == "torch"]
    assert "+cpu" in torch.splitlines()[0]
    wheels = [path for folder in _find_links() for path in Path(folder).glob("torch-*+cpu-*.whl")]
    environment.require(bool(wheels), "no pip find-links folder holds torch's +cpu wheel")
    for wheel in wheels:
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() in torch


@pytest.mark.parametrize("share", sorted(SHARES))
def test_each_share_is_lines_of_the_lock(share: str) -> None:
    lock = _blocks(LOCK)
    blocks = _blocks(REQUIREMENTS / f"{share}.txt")
    assert blocks
    for name, block in blocks.items():
        assert lock[name] == block, name
    # Everything the extras name directly is in it (pip's resolver added the rest).
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = [*extras["dependencies"]]
    for extra in SHARES[share]:
        direct += extras["optional-dependencies"][extra]
    assert {canonicalize_name(Requirement(r).name) for r in direct} <= set(blocks)
    if share not in ("train", "convert"):
        assert not {"torch", "tensorflow-cpu"} & set(blocks)


def test_make_installs_by_hash() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r $(LOCK)" in makefile
    assert "--require-hashes -r requirements/run.txt" in makefile
    assert "-c $(LOCK)" not in makefile
