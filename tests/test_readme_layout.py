"""The README's layout table names every top-level folder and every package, and only paths
that exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.environment import require

ROOT = Path(__file__).resolve().parents[1]


def listed_paths() -> list[str]:
    """Every backticked path in the first column of the README's layout table."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "no layout table under '## Layout'"
    return [path for row in rows for path in re.findall(r"`([^`]+)`", row.split(" | ")[0])]


def tracked_top_level_folders() -> set[str]:
    require((ROOT / ".git").exists(), "a git checkout (git ls-files lists what is tracked)")
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {name.split("/")[0] for name in files if "/" in name and not name.startswith(".")}


def packages() -> set[str]:
    source = ROOT / "src" / "clothing"
    return {path.parent.relative_to(ROOT).as_posix() for path in source.glob("*/__init__.py")}


def covered(folder: str, paths: list[str]) -> bool:
    return any(path.rstrip("/") == folder or path.startswith(folder + "/") for path in paths)


@pytest.mark.parametrize("path", listed_paths())
def test_every_listed_path_exists(path: str) -> None:
    assert (ROOT / path).exists(), f"the README's layout table names {path}, which does not exist"


def test_every_folder_and_package_is_listed() -> None:
    paths = listed_paths()
    missing = sorted(
        folder
        for folder in tracked_top_level_folders() | packages()
        if folder != "src" and not covered(folder, paths)
    )
    assert not missing, f"the README's layout table does not name {', '.join(missing)}"
