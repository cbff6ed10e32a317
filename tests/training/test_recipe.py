"""The recipe file and the options declared once: flags generated from the fields, the file
between the defaults and the flags, every limit checked in one place."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from clothing.cli import build_parser, main
from clothing.training.config import TrainConfig, config_as_dict
from clothing.training.train_cli import _config
from tests.bundled import BUNDLED_MODEL

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "clothing-v3.toml"
# The flags version 3 was trained with (its metadata.json records this command).
VERSION_3_FLAGS = [
    "--arch",
    "lite1",
    "--image-size",
    "240",
    "--serve-image-size",
    "272",
    "--head-epochs",
    "30",
    "--epochs",
    "0",
    "--full-epochs",
    "12",
    "--full-learning-rate",
    "3e-4",
    "--frozen-blocks",
    "0",
    "--trainable-blocks",
    "4",
    "--batch-size",
    "32",
    "--ema-decay",
    "0.998",
    "--balanced-loss",
]


def parsed(*flags: str) -> argparse.Namespace:
    return build_parser(["train"]).parse_args(["train", "--data=photos", *flags])


def recipe_values(config: TrainConfig) -> dict[str, object]:
    values = config_as_dict(config)
    for name in ("command", "recipe"):
        values.pop(name)
    return values


def test_the_recipe_file_is_the_flags_version_3_was_trained_with() -> None:
    from_file = _config(parsed(f"--recipe={RECIPE}", "--seed=7"), None)
    from_flags = _config(parsed(*VERSION_3_FLAGS, "--seed=7"), None)
    assert recipe_values(from_file) == recipe_values(from_flags)
    assert from_file.recipe == RECIPE
    assert from_file != _config(parsed("--seed=7"), None)  # the defaults are another recipe


def test_the_bundled_model_records_the_recipe_files_values() -> None:
    import tomllib

    recipe = tomllib.loads(RECIPE.read_text())
    training = json.loads((BUNDLED_MODEL / "3" / "metadata.json").read_text())["training"]
    assert {name: training[name] for name in recipe} == recipe


def test_flags_override_the_recipe_file() -> None:
    config = _config(parsed(f"--recipe={RECIPE}", "--batch-size=8", "--classes=hat, shoes"), None)
    assert (config.batch_size, config.arch, config.classes) == (8, "lite1", ("hat", "shoes"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("batch_sise = 32\n", "do not exist: batch_sise"),
        ('batch_size = "32"\n', "batch_size must be int"),
        ("balanced_loss = 1\n", "balanced_loss must be bool"),
        ("image_size = true\n", "image_size must be int"),
        ("arch = [\n", "recipe.toml is not a TOML file"),
    ],
)
def test_a_bad_recipe_file_is_refused(
    content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(content)
    assert main(["train", f"--data={tmp_path}", f"--recipe={recipe}"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size=0"], "--batch-size must be at least 1"),
        (["--epochs=-1"], "--epochs must be 0 or more"),
        (["--ema-decay=1"], "--ema-decay must be at least 0 and below 1"),
        (["--stop-after=0"], "--stop-after must be at least 1"),
        (["--threads=0"], "--threads must be at least 1"),
        ([], "--data is required"),
    ],
)
def test_limits_are_checked_before_anything_runs(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = [f"--data={tmp_path}"] if flags else []
    assert main(["train", *data, *flags]) == 2
    assert message in capsys.readouterr().err


def test_a_recipe_limit_is_checked_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("head_epochs = -3\n")
    assert main(["train", f"--data={tmp_path}", f"--recipe={recipe}"]) == 2
    assert "--head-epochs must be 0 or more" in capsys.readouterr().err
