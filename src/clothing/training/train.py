"""Fine-tune an EfficientNet-Lite: list the photos, then run the cached stage and the live one.

The stages are ``cached_stage`` and ``live_stage``; ``run`` keeps the books
(epochs, the kept state, saving after every epoch); ``config`` is the recipe.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from clothing.training import live
from clothing.training.cached_stage import fine_tune_cached
from clothing.training.config import TrainConfig
from clothing.training.data import (
    DatasetError,
    LabelledImages,
    content_hash,
    list_classes,
    list_images,
)
from clothing.training.folds import pooled_images, split_fold
from clothing.training.live_stage import LiveInputs, fine_tune_live
from clothing.training.network import SplitNetwork, build_network
from clothing.training.resume import TrainingState
from clothing.training.run import (
    EpochRecord,
    Progress,
    Run,
    RunPaused,
    TrainResult,
    training_summary,
)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_classes(config: TrainConfig) -> tuple[str, ...]:
    available = list_classes(config.data / "train")
    if config.classes is None:
        return available
    unknown = sorted(set(config.classes) - set(available))
    if unknown:
        raise DatasetError(f"unknown classes {', '.join(unknown)}; have {', '.join(available)}")
    return tuple(sorted(config.classes))


def loss_weights(labels: tuple[int, ...], classes: int) -> torch.Tensor:
    """Per-class weights inversely proportional to each class's share of the photos."""
    counts = torch.bincount(torch.tensor(labels), minlength=classes).float()
    return len(labels) / (classes * counts)


@dataclass(frozen=True)
class Photos:
    """The run's classes and labelled photos, and the hash that names them."""

    classes: tuple[str, ...]
    train: LabelledImages
    validation: LabelledImages
    data_hash: str


def list_photos(config: TrainConfig, resumed: TrainingState | None) -> Photos:
    """The photos under ``config.data``; a resumed run refuses photos it did not start on."""
    classes = select_classes(config)
    limit = config.max_images_per_class
    if config.folds:
        train_set, validation_set = split_fold(
            pooled_images(config.data, classes, limit), config.folds, config.fold
        )
    else:
        train_set = list_images(config.data / "train", classes, max_per_class=limit)
        validation_set = list_images(config.data / "validation", classes, max_per_class=limit)
    data_hash = content_hash(config.data, [*train_set.paths, *validation_set.paths])
    if resumed is not None and resumed.data_hash != data_hash:
        raise DatasetError(f"the photos under {config.data} are not the ones this run started on")
    return Photos(classes, train_set, validation_set, data_hash)


def start_run(
    config: TrainConfig,
    photos: Photos,
    log: Callable[[str], None],
    resumed: TrainingState | None,
) -> Run:
    """A run's shared state, seeded afresh or carried on from ``resumed``."""
    run = Run(
        config=config,
        classes=photos.classes,
        summary=training_summary(
            config, len(photos.train), len(photos.validation), photos.data_hash
        ),
        data_hash=photos.data_hash,
        rng=np.random.default_rng(config.seed),
        generator=torch.Generator().manual_seed(config.seed),
        progress=Progress([], 0, -1.0, {}, config.keeps_best),
        log=log,
    )
    if resumed is not None:
        run.progress = Progress(
            [EpochRecord(**item) for item in resumed.history],
            resumed.best_epoch,
            resumed.best_accuracy,
            resumed.best_state,
            config.keeps_best,
        )
        run.earlier_seconds = resumed.seconds
        log(f"resuming after epoch {len(run.progress.history)} of {run.total_epochs}")
    return run


def train(
    config: TrainConfig,
    log: Callable[[str], None] = print,
    resumed: TrainingState | None = None,
) -> TrainResult:
    """Run the whole training and write checkpoint, classes and history to ``config.output``.

    ``resumed`` (from ``load_state``) carries on a run after its last finished epoch.
    """
    seed_everything(config.seed)
    photos = list_photos(config, resumed)
    log(
        f"{len(photos.classes)} classes, {len(photos.train)} train"
        f" / {len(photos.validation)} validation images"
    )
    size = config.image_size
    split = SplitNetwork(
        build_network(config.arch, len(photos.classes), size, size), config.trainable_blocks
    )
    if config.full_epochs > 0:
        live.frozen_modules(split.network, config.frozen_blocks)  # refuse a bad value up front
    weight = (
        loss_weights(photos.train.labels, len(photos.classes)) if config.balanced_loss else None
    )
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
    run = start_run(config, photos, log, resumed)
    try:
        run_stages(run, split, photos, criterion, resumed)
    except RunPaused:
        log(f"paused; carry on with: clothing train --resume {config.output}")
    checkpoint = run.save_outputs()
    best_epoch, best_accuracy = run.progress.best_epoch, run.progress.best_accuracy
    kept = "best validation accuracy" if config.keeps_best else "last epoch's validation accuracy"
    log(f"{kept} {best_accuracy:.4f} at epoch {best_epoch}; wrote {checkpoint}")
    return TrainResult(checkpoint, best_epoch, best_accuracy, run.progress.history)


def run_stages(
    run: Run,
    split: SplitNetwork,
    photos: Photos,
    criterion: nn.Module,
    resumed: TrainingState | None,
) -> None:
    """The cached stage, then the live one from the cached stage's best state.

    A resumed run skips what its state says is done; ``RunPaused`` ends either stage.
    """
    sets = (photos.train, photos.validation)
    if resumed is None or resumed.stage == "cached":
        fine_tune_cached(run, split, sets, criterion, resumed)
    if run.config.full_epochs > 0:
        in_stage = resumed if resumed is not None and resumed.stage == "full" else None
        if in_stage is None:
            split.network.load_state_dict(run.progress.best_state)
        inputs = LiveInputs(*sets, criterion, run.generator, run.rng)
        fine_tune_live(run, split.network, inputs, in_stage)
