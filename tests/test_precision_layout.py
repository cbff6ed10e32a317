"""Which copy of the bundled model `clothing up` serves on a CPU."""

from pathlib import Path

import pytest

from clothing.serving_layout import PRECISION_BASE_PATHS, versions_on_disk
from clothing.up import default_model_base_path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_up_serves_the_int8_copy_when_there_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / PRECISION_BASE_PATHS["int8"] / "1").mkdir(parents=True)
    (tmp_path / PRECISION_BASE_PATHS["int8"] / "1" / "model.onnx").write_bytes(b"")
    assert default_model_base_path() == PRECISION_BASE_PATHS["int8"]


def test_up_falls_back_to_float32_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / PRECISION_BASE_PATHS["int8"]).mkdir(parents=True)  # no version in it
    assert default_model_base_path() == PRECISION_BASE_PATHS["float32"]
    assert "clothing quantize" in capsys.readouterr().out


def test_every_copy_is_served_under_the_bundled_name() -> None:
    # The gateway and clients ask for "clothing-model" whichever copy is loaded.
    float32 = Path(PRECISION_BASE_PATHS["float32"])
    assert float32.name == "clothing-model"
    assert versions_on_disk(REPO_ROOT / float32)
    for path in PRECISION_BASE_PATHS.values():
        assert Path(path).parent == float32.parent
