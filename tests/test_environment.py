"""The rule for missing tools and photos: skip on a developer's machine, fail in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import environment
from tests.environment import ROOT, dataset, dataset_path, missing, strict, tool


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CLOTHING_TESTS_STRICT": "1"}, True),
        ({"CI": "true", "CLOTHING_TESTS_STRICT": "0"}, False),
        ({"CI": "false"}, False),
    ],
)
def test_strict_follows_ci_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: bool
) -> None:
    for name in ("CI", "CLOTHING_TESTS_STRICT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert strict() is expected


def test_missing_skips_here_and_fails_in_a_strict_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOTHING_TESTS_STRICT", "0")
    with pytest.raises(pytest.skip.Exception, match="no such thing"):
        missing("no such thing")
    monkeypatch.setenv("CLOTHING_TESTS_STRICT", "1")
    with pytest.raises(pytest.fail.Exception, match="no such thing"):
        missing("no such thing")
    with pytest.raises(pytest.fail.Exception, match="not-a-real-tool is not installed"):
        tool("not-a-real-tool", "nowhere")


def test_the_dataset_is_found_like_the_makefile_finds_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CLOTHING_DATA", raising=False)
    assert dataset_path() == (ROOT / "../shared/datasets/clothing-small").resolve()
    monkeypatch.setenv("CLOTHING_DATA", "elsewhere/photos")
    assert dataset_path() == (ROOT / "elsewhere/photos").resolve()
    for split in ("train", "validation"):
        (tmp_path / split).mkdir()
    monkeypatch.setenv("CLOTHING_DATA", str(tmp_path))
    assert dataset() == tmp_path
    (tmp_path / "train").rmdir()
    monkeypatch.setattr(environment, "strict", lambda: True)
    with pytest.raises(pytest.fail.Exception, match=f"no labelled photos at {tmp_path}"):
        dataset()
