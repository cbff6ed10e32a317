"""A training run's bookkeeping: its epochs, the state it keeps, saving after every epoch.

Both stages (``cached_stage``, ``live_stage``) end each epoch through
:meth:`Run.end_epoch`, which records it, keeps the best (or the last) state,
saves everything a resumed run needs and pauses the run when asked.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from clothing.training.checkpoint import write_checkpoint
from clothing.training.config import TrainConfig, config_as_dict
from clothing.training.folds import FOLD_SEED
from clothing.training.resume import RandomStates, TrainingState, save_state


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
        **({"recipe": str(config.recipe)} if config.recipe is not None else {}),
        **cross_validation_summary(config),
    }


def cross_validation_summary(config: TrainConfig) -> dict[str, object]:
    """The fold a cross-validation run held out (nothing for an ordinary run)."""
    if not config.folds:
        return {}
    return {"folds": config.folds, "fold": config.fold, "fold_seed": FOLD_SEED, "keep": config.kept}


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
        return write_checkpoint(
            self.config.output,
            state=self.progress.best_state,
            classes=self.classes,
            training_info=training_info,
            best_accuracy=self.progress.best_accuracy,
            history=[asdict(record) for record in self.progress.history],
        )
