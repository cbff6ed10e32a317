"""The cached stage: the classifier's warm start and the epochs on cached activations.

Two CPU cores cannot afford full fine-tuning, so the early blocks are frozen and
run once per image view (the plain resize plus optional random views). The new
classifier is warm-started alone on pooled features, then the last blocks, head
and classifier train on the cache, with a random mirror of the cached
activations (and optional mixup) as cheap extra augmentation.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from clothing.training.data import LabelledImages
from clothing.training.features import cached_or_computed
from clothing.training.head import fit_head, pooled
from clothing.training.network import SplitNetwork
from clothing.training.resume import TrainingState
from clothing.training.run import Progress, Run, StageState, build_scheduler


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
