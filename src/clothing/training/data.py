"""Labelled image folders: listing, decoding, augmentation and a content hash.

A photo's plain pixels are the gateway's (``clothing.preprocessing.photo_pixels``:
the reduced decode, upright RGB, a plain bilinear resize to the model's width x
height, uint8), for photos of any size. Random views crop the full-size photo
(``open_upright``) and resize the crop the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from clothing.preprocessing import photo_pixels, resized_pixels

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


def load_batch(paths: list[Path], height: int, width: int) -> np.ndarray:
    """Photos as the gateway gives them to a ``width`` x ``height`` model, one uint8 NHWC array."""
    return np.stack([photo_pixels(path, width, height) for path in paths])


AUGMENTATIONS = ("light", "strong")


def augment(
    image: Image.Image,
    height: int,
    width: int,
    rng: np.random.Generator,
    strength: str = "light",
) -> np.ndarray:
    """A random view of a photo, uint8 HWC.

    ``light``: a crop keeping 65-100 % of the area, a mirror and brightness and
    contrast jitter. ``strong`` regularises a network trained end to end for
    many epochs on a few thousand photos: crops down to 30 % of the area, wider
    colour jitter (saturation too) and, half of the time, a random rectangle
    blanked with noise so that no single region (a collar, a hem) decides.
    """
    strong = strength == "strong"
    view = random_crop(image, rng, smallest_area=0.3 if strong else 0.65)
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = resized_pixels(view, width, height).astype(np.float32)
    spread = 0.3 if strong else 0.2
    contrast = rng.uniform(1 - spread, 1 + spread)
    brightness = rng.uniform(-20.0, 20.0) * (1.5 if strong else 1.0)
    mean = pixels.mean()
    jittered = (pixels - mean) * contrast + mean + brightness
    if strong:
        grey = jittered.mean(axis=2, keepdims=True)
        jittered = grey + (jittered - grey) * rng.uniform(1 - spread, 1 + spread)
        if rng.random() < 0.5:
            erase_rectangle(jittered, rng)
    return np.clip(np.rint(jittered), 0, 255).astype(np.uint8)


def random_crop(image: Image.Image, rng: np.random.Generator, smallest_area: float) -> Image.Image:
    """A crop of ``smallest_area``-100 % of the photo with an aspect ratio of 3:4 to 4:3."""
    source_width, source_height = image.size
    area_fraction = rng.uniform(smallest_area, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    crop_width = min(source_width, round(source_width * np.sqrt(area_fraction * aspect)))
    crop_height = min(source_height, round(source_height * np.sqrt(area_fraction / aspect)))
    left = int(rng.integers(0, source_width - crop_width + 1))
    top = int(rng.integers(0, source_height - crop_height + 1))
    return image.crop((left, top, left + crop_width, top + crop_height))


def erase_rectangle(pixels: np.ndarray, rng: np.random.Generator) -> None:
    """Fill a random rectangle of 2-20 % of the view with uniform noise, in place."""
    height, width = pixels.shape[:2]
    area = rng.uniform(0.02, 0.2) * height * width
    aspect = np.exp(rng.uniform(np.log(0.3), np.log(1 / 0.3)))
    box_height = min(height, max(1, round(np.sqrt(area * aspect))))
    box_width = min(width, max(1, round(np.sqrt(area / aspect))))
    top = int(rng.integers(0, height - box_height + 1))
    left = int(rng.integers(0, width - box_width + 1))
    noise = rng.uniform(0, 255, size=(box_height, box_width, pixels.shape[2]))
    pixels[top : top + box_height, left : left + box_width] = noise


def content_hash(root: Path, paths: list[Path]) -> str:
    """SHA-256 over each image's path (relative to ``root``) and bytes: names the exact data."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
