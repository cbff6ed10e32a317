"""A tiny labelled image set: real photos when the labelled photos are here, else drawn ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.environment import dataset_path, dataset_present
from tests.images import noisy

TINY_CLASSES = ("hat", "pants", "shoes")
TRAIN_PER_CLASS = 6
VALIDATION_PER_CLASS = 3


def _copy_real(source: Path, target: Path) -> None:
    for split, count in (("train", TRAIN_PER_CLASS), ("validation", VALIDATION_PER_CLASS)):
        for name in TINY_CLASSES:
            (target / split / name).mkdir(parents=True)
            for photo in sorted((source / split / name).glob("*.jpg"))[:count]:
                shutil.copy(photo, target / split / name / photo.name)


def _draw(target: Path) -> None:
    """Each class is a colour with noise, so even one epoch can tell them apart."""
    rng = np.random.default_rng(7)
    colours = {"hat": (200, 40, 40), "pants": (40, 200, 40), "shoes": (40, 40, 200)}
    for split, count in (("train", TRAIN_PER_CLASS), ("validation", VALIDATION_PER_CLASS)):
        for name in TINY_CLASSES:
            (target / split / name).mkdir(parents=True)
            for index in range(count):
                image = noisy(colours[name], (72, 96), 40, rng)
                image.save(target / split / name / f"{name}-{index}.jpg")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("tiny-dataset")
    if dataset_present():
        _copy_real(dataset_path(), target)
    else:
        _draw(target)
    return target
