"""Fine-tune an EfficientNet-Lite on cached frozen-trunk activations.

Two CPU cores cannot afford full fine-tuning, so the early blocks are frozen and
run once per image view (the plain resize plus optional random views). The new
classifier is warm-started alone on pooled features, then the last blocks, head
and classifier train on the cache, with a random mirror of the cached
activations (and optional mixup) as cheap extra augmentation.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet
from torch import nn
from tqdm import tqdm

from clothing.serving_layout import CLASSES_FILE, classes_bytes
from clothing.training import live
from clothing.training.data import (
    DatasetError,
    LabelledImages,
    content_hash,
    list_classes,
    list_images,
)
from clothing.training.features import cached_or_computed
from clothing.training.folds import FOLD_SEED, pooled_images, split_fold
from clothing.training.head import fit_head, pooled
from clothing.training.network import SplitNetwork, build_network
from clothing.training.resume import RandomStates, TrainingState, save_state

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.json"


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    output: Path
    arch: str = "lite0"
    image_size: int = 224
    epochs: int = 4
    head_epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.1
    mixup: float = 0.0
    schedule: str = "onecycle"
    augment_views: int = 0
    augment: str = "light"
    trainable_blocks: int = 1
    full_epochs: int = 0
    full_learning_rate: float = 2e-4
    frozen_blocks: int = 3
    ema_decay: float = 0.0
    seed: int = 1234
    max_images_per_class: int | None = None
    classes: tuple[str, ...] | None = None
    command: str = ""
    show_progress: bool = True
    cache_dir: Path | None = None
    serve_image_size: int | None = None
    balanced_loss: bool = False
    stop_after: int | None = None
    # Cross-validation: train on every labelled photo but fold ``fold`` of ``folds`` (0: off).
    folds: int = 0
    fold: int = 0
    # Which state the run keeps: "best" (on the validation photos) or "last" (the final epoch).
    keep: str = "best"

    @property
    def serve_size(self) -> int:
        """The side the model is validated (live stage) and exported at."""
        return self.serve_image_size or self.image_size

    @property
    def keeps_best(self) -> bool:
        """Whether the validation photos choose the kept state (never a held-out fold)."""
        return self.keep == "best"


# How a run is carried on: not part of the recipe, so not saved with it.
_NOT_SAVED = ("show_progress", "stop_after")


def config_as_dict(config: TrainConfig) -> dict[str, object]:
    """The recipe as plain values, for the saved training state."""
    values = asdict(config)
    for name in _NOT_SAVED:
        values.pop(name)
    for name in ("data", "output", "cache_dir"):
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
    for name in ("data", "output", "cache_dir"):
        if restored.get(name) is not None:
            restored[name] = Path(str(restored[name]))
    if restored.get("classes") is not None:
        restored["classes"] = tuple(restored["classes"])
    restored.update(overrides)
    return TrainConfig(**restored)


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    validation_loss: float
    validation_accuracy: float
    learning_rate: float
    seconds: float
    stage: str = "cached"  # "cached": on cached activations; "full": live, end to end


@dataclass
class TrainResult:
    checkpoint: Path
    best_epoch: int
    best_validation_accuracy: float
    history: list[EpochRecord] = field(default_factory=list)


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


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.learning_rate, total_steps=total_steps, pct_start=0.2
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    raise ValueError(f"unknown schedule {config.schedule!r}; use onecycle or cosine")


@torch.no_grad()
def evaluate_cached(
    split: SplitNetwork, features: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """Mean loss and top-1 accuracy of the trainable part on cached activations."""
    for module in split.trainable_modules():
        module.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(labels), batch_size):
        logits = split.rest(features[start : start + batch_size].float())
        target = labels[start : start + batch_size]
        loss_sum += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(dim=1) == target).sum())
    return loss_sum / len(labels), correct / len(labels)


@dataclass
class EpochInputs:
    split: SplitNetwork
    features: torch.Tensor
    labels: torch.Tensor
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    generator: torch.Generator
    batch_size: int
    description: str
    show_progress: bool
    mixup: float = 0.0
    mix_rng: np.random.Generator | None = None


def run_epoch(inputs: EpochInputs) -> tuple[float, float]:
    """One pass in random order, each image as one random cached view; mean loss, accuracy."""
    split, features, labels = inputs.split, inputs.features, inputs.labels
    views, count = features.shape[0], features.shape[1]
    for module in split.trainable_modules():
        module.train()
    order = torch.randperm(count, generator=inputs.generator)
    view_of = torch.randint(0, views, (count,), generator=inputs.generator)
    loss_sum, correct, seen = 0.0, 0, 0
    bar = tqdm(
        range(0, count, inputs.batch_size),
        desc=inputs.description,
        unit="step",
        disable=not inputs.show_progress,
    )
    for start in bar:
        index = order[start : start + inputs.batch_size]
        batch = features[view_of[index], index].float()
        # Mirroring the activations is a free extra view (close to mirroring the image).
        flip = torch.rand(len(index), generator=inputs.generator) < 0.5
        batch[flip] = batch[flip].flip(dims=(3,))
        target = labels[index]
        if inputs.mixup > 0 and inputs.mix_rng is not None:
            # Mixup on the cached activations: blends pairs of images and their labels.
            share = float(inputs.mix_rng.beta(inputs.mixup, inputs.mixup))
            partner = torch.randperm(len(index), generator=inputs.generator)
            logits = split.rest(share * batch + (1 - share) * batch[partner])
            loss = share * inputs.criterion(logits, target) + (1 - share) * inputs.criterion(
                logits, target[partner]
            )
        else:
            logits = split.rest(batch)
            loss = inputs.criterion(logits, target)
        inputs.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        inputs.optimizer.step()
        inputs.scheduler.step()
        loss_sum += float(loss.detach()) * len(index)
        correct += int((logits.argmax(dim=1) == target).sum())
        seen += len(index)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    return loss_sum / seen, correct / seen


def training_summary(
    config: TrainConfig, train_images: int, validation_images: int, data_hash: str
) -> dict[str, object]:
    """What metadata.json records about how the model was made."""
    return {
        "arch": config.arch,
        "image_size": config.image_size,
        "serve_image_size": config.serve_size,
        "balanced_loss": config.balanced_loss,
        "epochs": config.epochs,
        "head_epochs": config.head_epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "schedule": config.schedule,
        "label_smoothing": config.label_smoothing,
        "mixup": config.mixup,
        "augment_views": config.augment_views,
        "augment": config.augment,
        "trainable_blocks": config.trainable_blocks,
        "full_epochs": config.full_epochs,
        "full_learning_rate": config.full_learning_rate,
        "frozen_blocks": config.frozen_blocks,
        "ema_decay": config.ema_decay,
        "seed": config.seed,
        "train_images": train_images,
        "validation_images": validation_images,
        "data_sha256": data_hash,
        "command": config.command,
        **cross_validation_summary(config),
    }


def cross_validation_summary(config: TrainConfig) -> dict[str, object]:
    """The fold a cross-validation run held out (nothing for an ordinary run)."""
    if not config.folds:
        return {}
    return {"folds": config.folds, "fold": config.fold, "fold_seed": FOLD_SEED, "keep": config.keep}


def save_outputs(
    output: Path,
    *,
    state: dict[str, torch.Tensor],
    classes: tuple[str, ...],
    training_info: dict[str, object],
    best_accuracy: float,
    history: list[EpochRecord],
) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    checkpoint = output / CHECKPOINT_NAME
    torch.save(
        {
            "state_dict": state,
            "classes": list(classes),
            "training": training_info,
            "metrics": {"validation_accuracy": best_accuracy},
        },
        checkpoint,
    )
    (output / CLASSES_FILE).write_bytes(classes_bytes(classes))
    summary = {"training": training_info, "epochs": [asdict(record) for record in history]}
    (output / HISTORY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    return checkpoint


def _record_epoch(
    epoch: int,
    *,
    stage: str,
    train: tuple[float, float],
    validation: tuple[float, float],
    learning_rate: float,
    started: float,
    log: Callable[[str], None],
) -> EpochRecord:
    """One epoch's record from its (loss, accuracy) pairs; logs its line (live ones ``(full)``)."""
    record = EpochRecord(
        epoch=epoch,
        train_loss=train[0],
        train_accuracy=train[1],
        validation_loss=validation[0],
        validation_accuracy=validation[1],
        learning_rate=learning_rate,
        seconds=time.monotonic() - started,
        stage=stage,
    )
    marker = " (full)" if stage == "full" else ""
    log(
        f"epoch {epoch}{marker}: train loss {record.train_loss:.4f}"
        f" acc {record.train_accuracy:.4f} | validation loss {record.validation_loss:.4f}"
        f" acc {record.validation_accuracy:.4f}"
    )
    return record


@dataclass(frozen=True)
class LiveInputs:
    train_set: LabelledImages
    validation_set: LabelledImages
    criterion: nn.Module
    generator: torch.Generator
    rng: np.random.Generator


@dataclass
class Progress:
    """What a run has done so far: its epochs and the best state among them."""

    history: list[EpochRecord]
    best_epoch: int
    best_accuracy: float
    best_state: dict[str, torch.Tensor]
    keep_best: bool = True

    def add(self, record: EpochRecord, measured: nn.Module) -> None:
        self.history.append(record)
        # Strictly better only: ties keep the earlier, less fitted epoch. A run that keeps
        # its last epoch lets no score choose (the kept state is the one measured last).
        if record.validation_accuracy > self.best_accuracy or not self.keep_best:
            self.best_epoch, self.best_accuracy = record.epoch, record.validation_accuracy
            self.best_state = copy.deepcopy(measured.state_dict())


class RunPaused(Exception):
    """``--stop-after`` epochs are done; the saved state carries the run on later."""


@dataclass
class StageState:
    """What one stage trains with; saved after each of its epochs."""

    stage: str
    network: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    average: nn.Module | None = None

    def restore(self, saved: TrainingState) -> None:
        self.network.load_state_dict(saved.network)
        self.optimizer.load_state_dict(saved.optimizer)
        self.scheduler.load_state_dict(saved.scheduler)
        if self.average is not None and saved.average is not None:
            self.average.load_state_dict(saved.average)


@dataclass
class Run:
    """One training run's bookkeeping: progress, checkpoints after every epoch, ETA, pausing."""

    config: TrainConfig
    classes: tuple[str, ...]
    summary: dict[str, object]
    data_hash: str
    rng: np.random.Generator
    generator: torch.Generator
    progress: Progress
    log: Callable[[str], None]
    earlier_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return self.earlier_seconds + time.monotonic() - self.started

    @property
    def total_epochs(self) -> int:
        return self.config.epochs + self.config.full_epochs

    def end_epoch(
        self,
        epoch: int,
        results: tuple[tuple[float, float], tuple[float, float]],
        started: float,
        state: StageState,
        measured: nn.Module,
    ) -> None:
        """Record an epoch from its (loss, accuracy) on training and validation photos, save
        the run so far and say how long the rest takes; pause if asked."""
        train, validation = results
        record = _record_epoch(
            epoch,
            stage=state.stage,
            train=train,
            validation=validation,
            learning_rate=state.optimizer.param_groups[0]["lr"],
            started=started,
            log=self.log,
        )
        self.progress.add(record, measured)
        save_state(
            self.config.output,
            TrainingState(
                config=config_as_dict(self.config),
                data_hash=self.data_hash,
                stage=state.stage,
                network=state.network.state_dict(),
                optimizer=state.optimizer.state_dict(),
                scheduler=state.scheduler.state_dict(),
                average=None if state.average is None else state.average.state_dict(),
                random_states=RandomStates.capture(self.rng, self.generator),
                history=[asdict(item) for item in self.progress.history],
                best_epoch=self.progress.best_epoch,
                best_accuracy=self.progress.best_accuracy,
                best_state=self.progress.best_state,
                seconds=self.seconds,
            ),
        )
        self.save_outputs()
        done = len(self.progress.history)
        same_stage = [item.seconds for item in self.progress.history if item.stage == state.stage]
        left = self.total_epochs - done
        if left > 0:
            minutes = left * sum(same_stage) / len(same_stage) / 60
            self.log(f"{done}/{self.total_epochs} epochs done; about {minutes:.0f} min to go")
        stop_after = self.config.stop_after
        if stop_after is not None and done >= stop_after and left > 0:
            raise RunPaused

    def save_outputs(self) -> Path:
        training_info = {
            **self.summary,
            "best_epoch": self.progress.best_epoch,
            "seconds": round(self.seconds, 1),
        }
        return save_outputs(
            self.config.output,
            state=self.progress.best_state,
            classes=self.classes,
            training_info=training_info,
            best_accuracy=self.progress.best_accuracy,
            history=self.progress.history,
        )


def fine_tune_live(
    run: Run,
    network: EfficientNet,
    inputs: LiveInputs,
    resumed: TrainingState | None = None,
) -> None:
    """The live stage (see ``clothing.training.live``); epochs continue the numbering.

    ``resumed`` is a state saved after one of this stage's own epochs.
    """
    config = run.config
    size = config.image_size
    train_data = live.decode_all(inputs.train_set)
    validation_data = live.decode_all(inputs.validation_set)
    validation_pixels = live.plain_pixels(validation_data, config.serve_size)
    optimizer = torch.optim.AdamW(
        live.prepare(network, config.frozen_blocks),
        lr=config.full_learning_rate,
        weight_decay=config.weight_decay,
    )
    steps = math.ceil(len(inputs.train_set) / config.batch_size) * config.full_epochs
    scheduler = build_scheduler(
        optimizer, replace(config, learning_rate=config.full_learning_rate), steps
    )
    average = live.exponential_average(network, config.ema_decay) if config.ema_decay else None
    state = StageState("full", network, optimizer, scheduler, average)
    if resumed is not None:
        state.restore(resumed)
        resumed.random_states.restore(inputs.rng, inputs.generator)
    # With an average, it is what gets measured and kept, not the raw weights.
    measured: nn.Module = network if average is None else average.module
    first = config.epochs + 1
    done = sum(1 for record in run.progress.history if record.stage == "full")
    for epoch in range(first + done, first + config.full_epochs):
        epoch_started = time.monotonic()
        train = live.run_live_epoch(
            live.LiveEpoch(
                network=network,
                data=train_data,
                size=size,
                frozen_blocks=config.frozen_blocks,
                optimizer=optimizer,
                scheduler=scheduler,
                criterion=inputs.criterion,
                generator=inputs.generator,
                rng=inputs.rng,
                batch_size=config.batch_size,
                description=f"full {epoch - first + 1}/{config.full_epochs}",
                show_progress=config.show_progress,
                average=average,
                augmentation=config.augment,
            )
        )
        validation = live.evaluate_pixels(
            measured, validation_pixels, validation_data.labels, config.batch_size
        )
        run.end_epoch(epoch, (train, validation), epoch_started, state, measured)


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


def fine_tune_cached(
    run: Run,
    split: SplitNetwork,
    sets: tuple[LabelledImages, LabelledImages],
    criterion: nn.Module,
    resumed: TrainingState | None,
) -> None:
    """The warm start and the epochs on cached activations (the first ``--epochs``)."""
    config = run.config
    train_set, validation_set = sets
    split.freeze_trunk()
    started = time.monotonic()
    train_features, validation_features = cached_or_computed(
        config=config,
        split=split,
        train_set=train_set,
        validation_set=validation_set,
        data_hash=run.data_hash,
        rng=run.rng,
    )
    elapsed = time.monotonic() - started
    run.log(f"trunk activations {tuple(train_features.shape)} ready in {elapsed:.0f}s")
    train_labels = torch.tensor(train_set.labels)
    validation_labels = torch.tensor(validation_set.labels)
    parameters = [p for m in split.trainable_modules() for p in m.parameters()]
    optimizer = torch.optim.AdamW(
        parameters, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch * max(1, config.epochs))
    state = StageState("cached", split.network, optimizer, scheduler)
    if resumed is not None:
        state.restore(resumed)
        resumed.random_states.restore(run.rng, run.generator)
    else:
        run.progress = warm_start(
            run, split, (train_features, train_labels), (validation_features, validation_labels)
        )
    for epoch in range(len(run.progress.history) + 1, config.epochs + 1):
        epoch_started = time.monotonic()
        train = run_epoch(
            EpochInputs(
                split=split,
                features=train_features,
                labels=train_labels,
                optimizer=optimizer,
                scheduler=scheduler,
                criterion=criterion,
                generator=run.generator,
                batch_size=config.batch_size,
                description=f"epoch {epoch}/{config.epochs}",
                show_progress=config.show_progress,
                mixup=config.mixup,
                mix_rng=run.rng,
            )
        )
        validation = evaluate_cached(
            split, validation_features, validation_labels, config.batch_size
        )
        run.end_epoch(epoch, (train, validation), epoch_started, state, split.network)


def warm_start(
    run: Run,
    split: SplitNetwork,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
) -> Progress:
    """Fit the new classifier alone on pooled cached activations (``--head-epochs``).

    The network after it is epoch 0, the first best state, of a new run's progress.
    """
    config = run.config
    train_features, train_labels = train
    validation_features, validation_labels = validation
    if config.head_epochs > 0:
        views = train_features.shape[0]
        head_history = fit_head(
            split,
            train=(pooled(split, train_features.flatten(0, 1)), train_labels.repeat(views)),
            validation=(pooled(split, validation_features), validation_labels),
            epochs=config.head_epochs,
            label_smoothing=config.label_smoothing,
            generator=run.generator,
            keep_best=config.keeps_best,
        )
        kept = head_history if config.keeps_best else head_history[-1:]
        kept_head = max(record.validation_accuracy for record in kept)
        run.log(f"classifier alone ({config.head_epochs} epochs): validation acc {kept_head:.4f}")
    _, accuracy = evaluate_cached(split, validation_features, validation_labels, config.batch_size)
    return Progress([], 0, accuracy, copy.deepcopy(split.network.state_dict()), config.keeps_best)
