"""Warm start: fit the new classifier alone on pooled features before fine-tuning.

A randomly initialised classifier sends large, noisy gradients into the
pretrained blocks during the first fine-tuning steps. Fitting it first on the
frozen network's pooled features (a linear probe, seconds on a CPU) lets the
fine-tuning phase start from a sensible head and converge in fewer epochs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from clothing.training.network import SplitNetwork


@dataclass(frozen=True)
class HeadEpoch:
    epoch: int
    train_loss: float
    validation_accuracy: float


@torch.no_grad()
def pooled(split: SplitNetwork, features: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """Classifier inputs ``[N, C]`` for cached activations ``[N, ...]`` (frozen, eval mode)."""
    split.network.eval()
    parts = [
        split.embed(features[start : start + chunk].float())
        for start in range(0, len(features), chunk)
    ]
    return torch.cat(parts)


def fit_head(
    split: SplitNetwork,
    *,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    epochs: int,
    label_smoothing: float,
    generator: torch.Generator,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    keep_best: bool = True,
) -> list[HeadEpoch]:
    """Train ``_fc`` on pooled features; leaves the best-validation weights in place, or the
    last epoch's when ``keep_best`` is false (the validation photos then choose nothing)."""
    classifier, dropout = split.network._fc, split.network._dropout
    inputs, labels = train
    validation_inputs, validation_labels = validation
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=learning_rate, weight_decay=1e-2)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    best_accuracy, best_state = -1.0, copy.deepcopy(classifier.state_dict())
    history = []
    for epoch in range(1, epochs + 1):
        classifier.train()
        dropout.train()
        order = torch.randperm(len(labels), generator=generator)
        loss_sum = 0.0
        for start in range(0, len(labels), batch_size):
            index = order[start : start + batch_size]
            loss = criterion(classifier(dropout(inputs[index])), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(index)
        classifier.eval()
        with torch.no_grad():
            predicted = classifier(validation_inputs).argmax(dim=1)
        accuracy = float((predicted == validation_labels).float().mean())
        history.append(HeadEpoch(epoch, loss_sum / len(labels), accuracy))
        if accuracy > best_accuracy or not keep_best:
            best_accuracy, best_state = accuracy, copy.deepcopy(classifier.state_dict())
    classifier.load_state_dict(best_state)
    return history
