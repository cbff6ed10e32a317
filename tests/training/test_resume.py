"""A training run stopped after an epoch and resumed gives the numbers of one that never stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clothing.cli import main
from clothing.training.resume import RESUME_NAME

pytestmark = pytest.mark.slow

# Two epochs in each stage, so a pause can fall inside either stage or between them.
RECIPE = [
    "--image-size=64",
    "--epochs=2",
    "--head-epochs=3",
    "--batch-size=8",
    "--augment-views=1",
    "--trainable-blocks=2",
    "--full-epochs=2",
    "--frozen-blocks=4",
    "--ema-decay=0.9",
    "--balanced-loss",
    "--serve-image-size=72",
    "--threads=1",
    "--no-progress",
]


def epochs(output: Path) -> list[dict[str, object]]:
    history = json.loads((output / "history.json").read_text())["epochs"]
    for record in history:
        record.pop("seconds")
    return list(history)


@pytest.fixture(scope="module")
def unbroken(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("unbroken")
    assert main(["train", f"--data={tiny_dataset}", f"--output={output}", *RECIPE]) == 0
    return output


@pytest.mark.parametrize("stop_after", [1, 2, 3])
def test_a_resumed_run_matches_an_unbroken_one(
    unbroken: Path, tiny_dataset: Path, tmp_path: Path, stop_after: int
) -> None:
    output = tmp_path / "run"
    first = ["train", f"--data={tiny_dataset}", f"--output={output}", *RECIPE]
    assert main([*first, f"--stop-after={stop_after}"]) == 0
    assert len(epochs(output)) == stop_after
    assert (output / RESUME_NAME).is_file()
    assert main(["train", f"--resume={output}", "--threads=1", "--no-progress"]) == 0
    assert epochs(output) == epochs(unbroken)
    assert len(epochs(output)) == 4


def test_resume_refuses_a_folder_without_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", f"--resume={tmp_path}"]) == 2
    assert f"no {RESUME_NAME} in {tmp_path}" in capsys.readouterr().err


def test_train_needs_data_or_resume(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train"]) == 2
    assert "--data is required" in capsys.readouterr().err
