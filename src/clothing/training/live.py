"""Fine-tuning on freshly augmented images: each epoch draws new random views.

The cached stage sees only a few fixed views per image and cannot adapt the
early blocks; this stage trains the network end to end from block
``frozen_blocks`` on, with a new random crop, mirror and colour jitter of
every photo each epoch. The stem and the first blocks stay frozen and in eval
mode: that skips their backward pass (about 40 % of a step at 224 px on a CPU)
and keeps their ImageNet batch-norm statistics, which small batches would only
make noisier.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from clothing.preprocessing import open_upright, photo_pixels
from clothing.training.data import LabelledImages, augment
from clothing.training.network import normalise


@dataclass(frozen=True)
class DecodedImages:
    """Photos decoded once and kept in memory (the dataset's are about 170x224)."""

    images: tuple[Image.Image, ...]  # full size, for random crops
    labels: torch.Tensor


def decode_all(images: LabelledImages) -> DecodedImages:
    return DecodedImages(
        images=tuple(open_upright(path) for path in images.paths),
        labels=torch.tensor(images.labels),
    )


def frozen_modules(network: EfficientNet, frozen_blocks: int) -> list[nn.Module]:
    """The stem and the first ``frozen_blocks`` blocks."""
    blocks = network._blocks
    if not 0 <= frozen_blocks <= len(blocks):
        raise ValueError(f"--frozen-blocks must be between 0 and {len(blocks)}")
    return [network._conv_stem, network._bn0, *blocks[:frozen_blocks]]


def prepare(network: EfficientNet, frozen_blocks: int) -> list[nn.Parameter]:
    """Freeze the early modules; return every parameter that trains."""
    frozen = {
        id(p) for module in frozen_modules(network, frozen_blocks) for p in module.parameters()
    }
    trainable = []
    for parameter in network.parameters():
        parameter.requires_grad_(id(parameter) not in frozen)
        if parameter.requires_grad:
            trainable.append(parameter)
    return trainable


def train_mode(network: EfficientNet, frozen_blocks: int) -> None:
    network.train()
    for module in frozen_modules(network, frozen_blocks):
        module.eval()


def augmented_batches(
    data: DecodedImages,
    *,
    size: int,
    batch_size: int,
    generator: torch.Generator,
    rng: np.random.Generator,
    augmentation: str,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Random order, one new random view per photo: uint8 NHWC pixels and labels."""
    order = torch.randperm(len(data.images), generator=generator)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        pixels = np.stack(
            [augment(data.images[i], size, size, rng, augmentation) for i in index.tolist()]
        )
        yield torch.from_numpy(pixels), data.labels[index]


@dataclass
class LiveEpoch:
    network: EfficientNet
    data: DecodedImages
    size: int
    frozen_blocks: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    generator: torch.Generator
    rng: np.random.Generator
    batch_size: int
    description: str
    show_progress: bool
    average: AveragedModel | None = None
    augmentation: str = "light"


def exponential_average(network: EfficientNet, decay: float) -> AveragedModel:
    """A running average of the weights and batch-norm statistics, updated every step.

    Late fine-tuning epochs wander around a minimum on a small data set; their
    average generalises better than any single step and selects less on noise.
    """
    update = get_ema_multi_avg_fn(decay)  # type: ignore[no-untyped-call]  # torch leaves it untyped
    return AveragedModel(network, multi_avg_fn=update, use_buffers=True)


def run_live_epoch(epoch: LiveEpoch) -> tuple[float, float]:
    """One pass over new augmented views; mean loss and accuracy."""
    train_mode(epoch.network, epoch.frozen_blocks)
    batches = augmented_batches(
        epoch.data,
        size=epoch.size,
        batch_size=epoch.batch_size,
        generator=epoch.generator,
        rng=epoch.rng,
        augmentation=epoch.augmentation,
    )
    steps = -(-len(epoch.data.images) // epoch.batch_size)
    bar = tqdm(
        batches, total=steps, desc=epoch.description, unit="step", disable=not epoch.show_progress
    )
    loss_sum, correct, seen = 0.0, 0, 0
    for pixels, target in bar:
        logits = epoch.network(normalise(pixels))
        loss = epoch.criterion(logits, target)
        epoch.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        epoch.optimizer.step()
        epoch.scheduler.step()
        if epoch.average is not None:
            epoch.average.update_parameters(epoch.network)
        loss_sum += float(loss.detach()) * len(target)
        correct += int((logits.argmax(dim=1) == target).sum())
        seen += len(target)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    return loss_sum / seen, correct / seen


def plain_pixels(images: LabelledImages, size: int) -> torch.Tensor:
    """Every photo as the gateway gives it to a ``size`` x ``size`` model, uint8 NHWC
    (decoded from its file: no full-size copy is kept for photos that are only measured)."""
    return torch.from_numpy(np.stack([photo_pixels(path, size, size) for path in images.paths]))


@torch.no_grad()
def evaluate_pixels(
    network: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """Mean loss and top-1 accuracy of the whole network on uint8 NHWC pixels."""
    network.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(labels), batch_size):
        logits = network(normalise(pixels[start : start + batch_size]))
        target = labels[start : start + batch_size]
        loss_sum += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(dim=1) == target).sum())
    return loss_sum / len(labels), correct / len(labels)
