"""Labelled image folders: listing, decoding, augmentation and a content hash.

Preprocessing matches the gateway: decode, convert to RGB, a plain bilinear
resize to the model's width x height (no aspect ratio kept), uint8 pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


class DatasetError(ValueError):
    """The folder does not hold a usable labelled image set."""


@dataclass(frozen=True)
class LabelledImages:
    """Image paths with integer labels indexing ``classes``."""

    classes: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.paths)


def list_classes(directory: Path) -> tuple[str, ...]:
    """Class names are the sorted names of the folder's subfolders."""
    if not directory.is_dir():
        raise DatasetError(f"not a directory: {directory}")
    classes = tuple(sorted(entry.name for entry in directory.iterdir() if entry.is_dir()))
    if not classes:
        raise DatasetError(f"no class subfolders in {directory}")
    return classes


def list_images(
    directory: Path,
    classes: tuple[str, ...],
    *,
    max_per_class: int | None = None,
) -> LabelledImages:
    """Every image under ``directory/<class>/``, in a stable (sorted) order."""
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        class_dir = directory / name
        if not class_dir.is_dir():
            raise DatasetError(f"missing class folder {class_dir}")
        files = sorted(
            path
            for path in class_dir.iterdir()
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        )
        if max_per_class is not None:
            files = files[:max_per_class]
        if not files:
            raise DatasetError(f"no images in {class_dir}")
        paths.extend(files)
        labels.extend([label] * len(files))
    return LabelledImages(classes=classes, paths=tuple(paths), labels=tuple(labels))


def load_rgb(path: Path) -> Image.Image:
    """Decode an image file as RGB."""
    with Image.open(path) as image:
        return image.convert("RGB")


def to_model_input(image: Image.Image, height: int, width: int) -> np.ndarray:
    """The gateway's preprocessing: plain bilinear resize to ``width x height``, uint8 HWC."""
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def load_batch(paths: list[Path], height: int, width: int) -> np.ndarray:
    """Decode and resize images into one uint8 NHWC array."""
    return np.stack([to_model_input(load_rgb(path), height, width) for path in paths])


def augment(image: Image.Image, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random view: crop keeping 65-100 % of the area, mirror, brightness/contrast jitter."""
    source_width, source_height = image.size
    area_fraction = rng.uniform(0.65, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    crop_width = min(source_width, round(source_width * np.sqrt(area_fraction * aspect)))
    crop_height = min(source_height, round(source_height * np.sqrt(area_fraction / aspect)))
    left = int(rng.integers(0, source_width - crop_width + 1))
    top = int(rng.integers(0, source_height - crop_height + 1))
    view = image.crop((left, top, left + crop_width, top + crop_height))
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = to_model_input(view, height, width).astype(np.float32)
    contrast = rng.uniform(0.8, 1.2)
    brightness = rng.uniform(-20.0, 20.0)
    mean = pixels.mean()
    jittered = (pixels - mean) * contrast + mean + brightness
    return np.clip(np.rint(jittered), 0, 255).astype(np.uint8)


def content_hash(root: Path, paths: list[Path]) -> str:
    """SHA-256 over each image's path (relative to ``root``) and bytes: names the exact data."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
