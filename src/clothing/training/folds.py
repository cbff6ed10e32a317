"""Stratified k-fold splits of every labelled photo, for an accuracy estimate no choice has seen.

The dataset's own train/ and validation/ folders are pooled and each class's
photos are dealt in a seeded random order into ``folds`` parts, so every part
holds about the same share of each class. A fold run trains on all parts but
one and is scored on the part it held out. The split depends only on the file
names, the labels and ``FOLD_SEED``, never on a training seed, so every run of
every recipe sees the same five held-out parts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clothing.training.data import LabelledImages, list_images

# Fixed for good: changing it changes every fold and invalidates every saved fold result.
FOLD_SEED = 20261207
SPLITS = ("train", "validation")


def pooled_images(
    data: Path, classes: tuple[str, ...], max_per_class: int | None
) -> LabelledImages:
    """Every photo of ``data/train`` and ``data/validation``, train first, each in folder order."""
    parts = [list_images(data / split, classes, max_per_class=max_per_class) for split in SPLITS]
    return LabelledImages(
        classes=classes,
        paths=tuple(path for part in parts for path in part.paths),
        labels=tuple(label for part in parts for label in part.labels),
    )


def fold_of_each(images: LabelledImages, folds: int) -> np.ndarray:
    """The part (0 .. folds-1) each photo falls in: each class shuffled, then dealt in turn.

    The dealing goes on from one class to the next, so the parts differ in size by one at most.
    """
    if folds < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    labels = np.asarray(images.labels)
    rng = np.random.default_rng(FOLD_SEED)
    assignment = np.empty(len(labels), dtype=np.int64)
    dealt = 0
    for label in range(len(images.classes)):
        members = np.flatnonzero(labels == label)
        if len(members) < folds:
            raise ValueError(
                f"class {images.classes[label]!r} has {len(members)} photos,"
                f" fewer than {folds} folds"
            )
        shuffled = members[rng.permutation(len(members))]
        assignment[shuffled] = (dealt + np.arange(len(members))) % folds
        dealt += len(members)
    return assignment


def subset(images: LabelledImages, keep: np.ndarray) -> LabelledImages:
    """The photos where ``keep`` is true, in their original order."""
    indices = np.flatnonzero(keep)
    return LabelledImages(
        classes=images.classes,
        paths=tuple(images.paths[i] for i in indices),
        labels=tuple(images.labels[i] for i in indices),
    )


def split_fold(
    images: LabelledImages, folds: int, fold: int
) -> tuple[LabelledImages, LabelledImages]:
    """(training photos, held-out photos) of fold ``fold`` (1 .. folds)."""
    if not 1 <= fold <= folds:
        raise ValueError(f"fold must be 1 to {folds}, got {fold}")
    held_out = fold_of_each(images, folds) == fold - 1
    return subset(images, ~held_out), subset(images, held_out)
