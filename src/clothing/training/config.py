"""A training run's recipe: every option declared once, with its default, help and limits.

``clothing train`` generates its flags from these fields, reads a recipe file
(``--recipe``, TOML, keys named as the fields) between the defaults and the
flags, and checks every value here. The run saves the recipe with its state,
so ``--resume`` carries on with exactly the recipe it started with.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from clothing.options import SettingsError, limit_problems, option
from clothing.training.data import AUGMENTATIONS

ARCHS = ("lite0", "lite1", "lite2")
SCHEDULES = ("onecycle", "cosine")
KEEPS = ("best", "last")


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    output: Path
    arch: str = option("lite0", choices=ARCHS, help="EfficientNet-Lite size")
    image_size: int = option(224, minimum=1, help="square training input side in pixels")
    serve_image_size: int | None = option(
        None,
        minimum=1,
        help="square side the live stage validates at and the export serves (default:"
        " --image-size); a little larger than the training side usually scores better",
    )
    balanced_loss: bool = option(
        False, help="weight each class's loss inversely to its share of the training photos"
    )
    epochs: int = option(4, minimum=0, help="fine-tuning passes over the cached views")
    head_epochs: int = option(
        30, minimum=0, help="epochs fitting the new classifier alone before fine-tuning (0: skip)"
    )
    batch_size: int = option(64, minimum=1, help="images per optimiser step")
    learning_rate: float = option(1e-3, help="peak learning rate")
    weight_decay: float = 1e-2
    schedule: str = option("onecycle", choices=SCHEDULES, help="learning-rate schedule")
    label_smoothing: float = option(0.1, help="cross-entropy label smoothing")
    mixup: float = option(
        0.0,
        minimum=0,
        help="mixup Beta(a, a) parameter for fine-tuning on cached activations (0: off)",
    )
    augment_views: int = option(
        0, minimum=0, help="random augmented views cached per training image, besides the plain one"
    )
    augment: str = option(
        "light",
        choices=AUGMENTATIONS,
        help="random views: light (crop, mirror, brightness and contrast) or strong"
        " (smaller crops, saturation, random erasing)",
    )
    trainable_blocks: int = option(
        1, help="how many of the last MBConv blocks train (the rest are frozen and cached)"
    )
    full_epochs: int = option(
        0,
        minimum=0,
        help="after the cached stage, epochs training every block after --frozen-blocks"
        " on new random views of each image (0: off)",
    )
    full_learning_rate: float = option(2e-4, help="peak learning rate of the --full-epochs stage")
    frozen_blocks: int = option(
        3,
        minimum=0,
        help="blocks after the stem that stay frozen during the --full-epochs stage",
    )
    ema_decay: float = option(
        0.0,
        minimum=0,
        below=1,
        help="measure and keep an exponential moving average of the weights during the"
        " --full-epochs stage, with this per-step decay, e.g. 0.99 (0: off)",
    )
    seed: int = option(1234, help="random seed (fixed for reproducibility)")
    max_images_per_class: int | None = option(None, help="use at most N images per class")
    classes: tuple[str, ...] | None = option(
        None, help="comma-separated subset of class names (default: all)"
    )
    command: str = ""
    show_progress: bool = True
    cache_dir: Path | None = option(
        None, help="keep the frozen-trunk activations here and reuse them on the next run"
    )
    stop_after: int | None = option(
        None,
        minimum=1,
        metavar="EPOCHS",
        help="pause once this many epochs (of both stages) are done; --resume carries on",
    )
    # Cross-validation: train on every labelled photo but part ``fold`` of ``folds`` (0: off).
    folds: int = option(
        0,
        metavar="K",
        help="cross-validation: pool train/ and validation/, split every class into K parts"
        " and train on all but part --fold, which becomes the validation photos (0: off)",
    )
    fold: int = option(0, metavar="I", help="the part (1 to K) a --folds run holds out")
    keep: str | None = option(
        None,
        choices=KEEPS,
        help="the state the run keeps: the epoch best on the validation photos, or the last"
        " (default: best; with --folds always last, so the held-out part chooses nothing)",
    )
    recipe: Path | None = None  # the recipe file the run's settings came from, if any

    @property
    def serve_size(self) -> int:
        """The side the model is validated (live stage) and exported at."""
        return self.serve_image_size or self.image_size

    @property
    def kept(self) -> str:
        """Which state the run keeps: a held-out fold never chooses, so folds keep the last."""
        return self.keep or ("last" if self.folds else "best")

    @property
    def keeps_best(self) -> bool:
        """Whether the validation photos choose the kept state (never a held-out fold)."""
        return self.kept == "best"


def problems(config: TrainConfig) -> str | None:
    """What is wrong with the recipe, if anything: each limit, then the folds."""
    return limit_problems(config) or _fold_problems(config)


def _fold_problems(config: TrainConfig) -> str | None:
    if config.folds == 0:
        return "--fold needs --folds" if config.fold else None
    if config.folds < 2:
        return "--folds must be 0 (off) or at least 2"
    if not 1 <= config.fold <= config.folds:
        return f"--fold must be 1 to {config.folds} with --folds {config.folds}"
    if config.keep == "best":
        return "--folds keeps the last epoch: the held-out part must not choose the state"
    return None


def read_recipe(path: Path) -> dict[str, Any]:
    """A recipe file's settings (TOML; keys named as the fields: ``batch_size = 32``)."""
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path} is not a TOML file: {error}") from error


# How a run is carried on: not part of the recipe, so not saved with it.
_NOT_SAVED = ("show_progress", "stop_after")
_PATHS = ("data", "output", "cache_dir", "recipe")


def config_as_dict(config: TrainConfig) -> dict[str, object]:
    """The recipe as plain values, for the saved training state."""
    values = asdict(config)
    for name in _NOT_SAVED:
        values.pop(name)
    for name in _PATHS:
        if values[name] is not None:
            values[name] = str(values[name])
    if values["classes"] is not None:
        values["classes"] = list(values["classes"])
    return values


def config_from_dict(values: dict[str, object], **overrides: object) -> TrainConfig:
    """The saved recipe, with ``overrides`` (data folder, progress, pausing) applied."""
    known = {item.name for item in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"the saved run names settings this version lacks: {', '.join(unknown)}")
    restored: dict[str, Any] = dict(values)
    for name in _PATHS:
        if restored.get(name) is not None:
            restored[name] = Path(str(restored[name]))
    if restored.get("classes") is not None:
        restored["classes"] = tuple(restored["classes"])
    restored.update(overrides)
    return TrainConfig(**restored)
