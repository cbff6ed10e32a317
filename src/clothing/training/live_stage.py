"""The live stage: every block after ``--frozen-blocks`` trains end to end on a new random
view of each photo per epoch (the mechanics are in ``clothing.training.live``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

from clothing.training import live
from clothing.training.data import LabelledImages
from clothing.training.resume import TrainingState
from clothing.training.run import Run, StageState, build_scheduler


@dataclass(frozen=True)
class LiveInputs:
    train_set: LabelledImages
    validation_set: LabelledImages
    criterion: nn.Module
    generator: torch.Generator
    rng: np.random.Generator


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
    validation_pixels = live.plain_pixels(inputs.validation_set, config.serve_size)
    validation_labels = torch.tensor(inputs.validation_set.labels)
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
            measured, validation_pixels, validation_labels, config.batch_size
        )
        run.end_epoch(epoch, (train, validation), epoch_started, state, measured)
