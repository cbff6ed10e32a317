"""Give the lock file a hash for every file of every pinned version, and write what
each install reads from it.

``requirements/lock.txt`` pins every distribution of every extra (``name==version``).
This script keeps those versions exactly and adds, for each, the sha256 of every file
the package index holds for that version (wheels for every platform, and the sdist),
so ``pip install --require-hashes`` accepts only those bytes on any machine. A version
with a local label, such as torch's ``+cpu`` build, is not on the index: its hashes
are those of the matching files in pip's find-links folders (``PIP_FIND_LINKS``).

It also writes the share of the lock that each install needs, for the extras alone,
as pip's resolver picks it (``pip install --dry-run --report``):

- ``requirements/server.txt``: the model server image (extra ``server``);
- ``requirements/gateway.txt``: the gateway image (extra ``gateway``);
- ``requirements/client.txt``, ``train.txt``, ``convert.txt``: those extras alone;
- ``requirements/run.txt``: ``make run`` (``server``, ``gateway`` and ``client``).

Usage: ``python scripts/lock.py [--pins FILE]``: ``--pins`` takes the versions from
another file (``make lock`` passes a fresh ``pip freeze``); by default the lock's own
versions are kept. Needs the package index (``--index-url``, default PyPI).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterable, Mapping
from hashlib import sha256
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
LOCK = REQUIREMENTS / "lock.txt"
INDEX = "https://pypi.org/simple"
# make install puts in every extra (the lock must hold all that they need).
EVERY_EXTRA = ("server", "gateway", "client", "train", "dev", "convert")
SUBSETS: Mapping[str, tuple[str, ...]] = {
    "server": ("server",),
    "gateway": ("gateway",),
    "client": ("client",),
    "train": ("train",),
    "convert": ("convert",),
    "run": ("server", "gateway", "client"),
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
HEADER = (
    "# {what}\n"
    "# Written by scripts/lock.py (make lock): every version pinned, with the sha256 of every\n"
    "# file the package index holds for it. Install with pip install --require-hashes -r.\n"
)


def read_pins(path: Path) -> dict[str, tuple[str, str]]:
    """``{canonical name: (name as written, version)}`` of every ``name==version`` line."""
    pins: dict[str, tuple[str, str]] = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match[1])] = (match[1], match[2])
    return pins


def file_version(filename: str) -> tuple[str, Version] | None:
    """(canonical name, version) of a wheel or sdist file name; None for anything else."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return name, version


def index_hashes(index: str, name: str, version: str) -> set[str]:
    """sha256 of every file of ``name`` ``version`` on the index (JSON simple API)."""
    request = urllib.request.Request(
        f"{index.rstrip('/')}/{canonicalize_name(name)}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        files = json.load(answer)["files"]
    wanted = (canonicalize_name(name), Version(version))
    return {
        item["hashes"]["sha256"]
        for item in files
        if "sha256" in item.get("hashes", {}) and file_version(item["filename"]) == wanted
    }


def local_hashes(folders: Iterable[Path], name: str, version: str) -> set[str]:
    """sha256 of the files of ``name`` ``version`` in pip's find-links folders."""
    wanted = (canonicalize_name(name), Version(version))
    return {
        sha256(path.read_bytes()).hexdigest()
        for folder in folders
        if folder.is_dir()
        for path in sorted(folder.iterdir())
        if file_version(path.name) == wanted
    }


def hashed_lines(
    pins: Mapping[str, tuple[str, str]], index: str, folders: list[Path]
) -> dict[str, str]:
    """``{canonical name: the lock's block for it}``, hashes sorted."""
    blocks = {}
    for key, (name, version) in sorted(pins.items()):
        found = local_hashes(folders, name, version)
        if not Version(version).local:
            found |= index_hashes(index, name, version)
        if not found:
            raise SystemExit(f"lock: no file of {name}=={version} on {index} or in {folders}")
        hashes = " \\\n".join(f"    --hash=sha256:{digest}" for digest in sorted(found))
        blocks[key] = f"{name}=={version} \\\n{hashes}\n"
    return blocks


def resolved(extras: tuple[str, ...], pins: Mapping[str, tuple[str, str]]) -> set[str]:
    """Canonical names pip installs for the project with ``extras``, held to ``pins``."""
    with tempfile.TemporaryDirectory() as work:
        constraints = Path(work) / "pins.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in pins.values()))
        report = Path(work) / "report.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--dry-run",
                "--ignore-installed",
                "--report",
                str(report),
                "-c",
                str(constraints),
                f"{ROOT}[{','.join(extras)}]",
            ],
            check=True,
        )
        installs = json.loads(report.read_text())["install"]
    project = canonicalize_name("clothing-classifier")
    names: set[str] = {canonicalize_name(item["metadata"]["name"]) for item in installs}
    return names - {project}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pins", type=Path, default=LOCK, help="versions to lock (default: the lock's)"
    )
    parser.add_argument("--index-url", default=INDEX, help=f"package index (default {INDEX})")
    args = parser.parse_args()
    folders = [Path(p) for p in os.environ.get("PIP_FIND_LINKS", "").split() if p]
    pins = read_pins(args.pins)
    unlocked = resolved(EVERY_EXTRA, pins) - set(pins)
    if unlocked:
        raise SystemExit(f"lock: the extras need {sorted(unlocked)}, which the pins lack")
    blocks = hashed_lines(pins, args.index_url, folders)
    what = "Every extra's dependencies (make install)."
    LOCK.write_text(HEADER.format(what=what) + "".join(blocks.values()))
    for subset, extras in SUBSETS.items():
        names = resolved(extras, pins)
        what = f"The lock's share for the extras {', '.join(extras)} alone."
        text = HEADER.format(what=what) + "".join(blocks[name] for name in sorted(names))
        (REQUIREMENTS / f"{subset}.txt").write_text(text)
        print(f"requirements/{subset}.txt: {len(names)} of {len(blocks)} locked distributions")
    print(f"requirements/lock.txt: {len(blocks)} distributions, every one with its files' hashes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
