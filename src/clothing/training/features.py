"""Frozen-trunk activations, computed once per image view and optionally kept on disk."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from clothing.preprocessing import open_upright, photo_pixels
from clothing.training.data import LabelledImages, augment
from clothing.training.network import SplitNetwork

if TYPE_CHECKING:
    from clothing.training.config import TrainConfig

# The cache always stops this many blocks before the end (for lite0: where the
# 7x7 stage starts), whatever --trainable-blocks says; with fewer trainable
# blocks the remaining frozen ones run once over the cache, which is cheap.
CACHED_TAIL_BLOCKS = 4


@torch.no_grad()
def cache_features(
    split: SplitNetwork,
    images: LabelledImages,
    *,
    size: int,
    views: int,
    until: int,
    rng: np.random.Generator,
    description: str,
    augmentation: str = "light",
    show_progress: bool,
    chunk: int = 32,
) -> torch.Tensor:
    """Activations before block ``until``, float16 ``[views, N, C, h, w]``.

    View 0 is the plain resize, the others random augmentations.
    """
    split.network.eval()
    parts: list[torch.Tensor] = []
    starts = range(0, len(images), chunk)
    for start in tqdm(starts, desc=description, unit="batch", disable=not show_progress):
        paths = images.paths[start : start + chunk]
        batch = [photo_pixels(path, size, size) for path in paths]
        decoded = [open_upright(path) for path in paths] if views > 1 else []
        for _ in range(views - 1):
            batch.extend(augment(image, size, size, rng, augmentation) for image in decoded)
        features = split.trunk(torch.from_numpy(np.stack(batch)), until=until).half()
        parts.append(features.view(views, len(paths), *features.shape[1:]))
    return torch.cat(parts, dim=1)


@torch.no_grad()
def move_to_cut(
    split: SplitNetwork, features: torch.Tensor, start: int, chunk: int = 256
) -> torch.Tensor:
    """Run the frozen blocks ``start`` .. ``split.cut - 1`` over cached activations."""
    if start == split.cut:
        return features
    split.network.eval()
    parts = []
    for begin in range(0, features.shape[1], chunk):
        piece = features[:, begin : begin + chunk]
        flat = piece.reshape(-1, *piece.shape[2:]).float()
        moved = split.advance(flat, start, split.cut).half()
        parts.append(moved.view(piece.shape[0], piece.shape[1], *moved.shape[1:]))
    return torch.cat(parts, dim=1)


def cached_or_computed(
    *,
    config: TrainConfig,
    split: SplitNetwork,
    train_set: LabelledImages,
    validation_set: LabelledImages,
    data_hash: str,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations at ``split.cut`` for train (all views) and validation.

    The expensive part is kept in ``cache_dir`` under a key of everything that
    changes it, so a second run with other optimiser settings skips it.
    """
    cache_point = len(split.network._blocks) - CACHED_TAIL_BLOCKS
    if split.cut < cache_point:
        raise ValueError(f"--trainable-blocks may be at most {CACHED_TAIL_BLOCKS}")
    key_fields = {
        "arch": config.arch,
        "image_size": config.image_size,
        "views": 1 + config.augment_views,
        "augment": config.augment,
        "trainable_blocks": CACHED_TAIL_BLOCKS,
        "seed": config.seed,
        "data": data_hash,
    }
    if config.folds:
        key_fields |= {"folds": config.folds, "fold": config.fold}
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
    cache_file = None if config.cache_dir is None else config.cache_dir / f"features-{key}.pt"
    if cache_file is not None and cache_file.is_file():
        stored = torch.load(cache_file, weights_only=True)
        train_features, validation_features = stored["train"], stored["validation"]
    else:
        train_features, validation_features = compute(
            config,
            split=split,
            train_set=train_set,
            validation_set=validation_set,
            rng=rng,
            cache_point=cache_point,
        )
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            stored = {"train": train_features, "validation": validation_features}
            torch.save(stored, cache_file)
    return (
        move_to_cut(split, train_features, cache_point),
        move_to_cut(split, validation_features[None], cache_point)[0],
    )


def compute(
    config: TrainConfig,
    *,
    split: SplitNetwork,
    train_set: LabelledImages,
    validation_set: LabelledImages,
    rng: np.random.Generator,
    cache_point: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    size, progress = config.image_size, config.show_progress
    train_features = cache_features(
        split,
        train_set,
        size=size,
        views=1 + config.augment_views,
        until=cache_point,
        rng=rng,
        augmentation=config.augment,
        description="cache train",
        show_progress=progress,
    )
    validation_features = cache_features(
        split,
        validation_set,
        size=size,
        views=1,
        until=cache_point,
        rng=rng,
        description="cache validation",
        show_progress=progress,
    )[0]
    return train_features, validation_features
