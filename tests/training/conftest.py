"""A tiny labelled image set: real photos when the shared data set is here, else drawn ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATASET = Path("/work/shared/datasets/clothing-small")
TINY_CLASSES = ("hat", "pants", "shoes")
TRAIN_PER_CLASS = 6
VALIDATION_PER_CLASS = 3


def dataset_present() -> bool:
    return (DATASET / "train").is_dir() and (DATASET / "validation").is_dir()


def _copy_real(target: Path) -> None:
    for split, count in (("train", TRAIN_PER_CLASS), ("validation", VALIDATION_PER_CLASS)):
        for name in TINY_CLASSES:
            (target / split / name).mkdir(parents=True)
            for source in sorted((DATASET / split / name).glob("*.jpg"))[:count]:
                shutil.copy(source, target / split / name / source.name)


def _draw(target: Path) -> None:
    """Each class is a colour with noise, so even one epoch can tell them apart."""
    rng = np.random.default_rng(7)
    colours = {"hat": (200, 40, 40), "pants": (40, 200, 40), "shoes": (40, 40, 200)}
    for split, count in (("train", TRAIN_PER_CLASS), ("validation", VALIDATION_PER_CLASS)):
        for name in TINY_CLASSES:
            (target / split / name).mkdir(parents=True)
            for index in range(count):
                noise = rng.integers(-40, 40, size=(96, 72, 3))
                pixels = np.clip(np.array(colours[name]) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(target / split / name / f"{name}-{index}.jpg")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("tiny-dataset")
    if dataset_present():
        _copy_real(target)
    else:
        _draw(target)
    return target
