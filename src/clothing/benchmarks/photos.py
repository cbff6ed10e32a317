"""The photos a level-2 run sends: the dataset's own size and phone size.

Phone-size photos are dataset photos upscaled so the long side is ~2000 px and saved
as quality-90 JPEG, the way a phone camera's output reaches the service. Without the
dataset, seeded synthetic photos of the dataset's size stand in (and say so).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Where the Makefile keeps the labelled photos (its DATA), from the repository root.
DEFAULT_DATASET = Path("../shared/datasets/clothing-small/validation")
PHONE_LONG_SIDE = 2000
PHONE_QUALITY = 90
SIZES = ("dataset", "phone")


@dataclass(frozen=True)
class PhotoSet:
    """Photos of one size, written to ``directory`` (so a local server can serve them)."""

    size: str
    directory: Path
    names: tuple[str, ...]
    source: str
    width: int
    height: int

    def paths(self) -> list[Path]:
        return [self.directory / name for name in self.names]

    def mean_bytes(self) -> int:
        sizes = [path.stat().st_size for path in self.paths()]
        return int(sum(sizes) / len(sizes)) if sizes else 0


def _dataset_files(dataset: Path, count: int) -> list[Path]:
    if not dataset.is_dir():
        return []
    files = sorted(dataset.glob("*/*.jpg")) + sorted(dataset.glob("*.jpg"))
    # Every k-th file, so each class is represented rather than the first folder only.
    step = max(1, len(files) // count) if files else 1
    return files[::step][:count]


def _synthetic_jpeg(rng: np.random.Generator, width: int, height: int) -> bytes:
    from PIL import Image

    # Smooth gradients plus noise: compresses like a photo, not like flat colour.
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, size=3)
    slope = rng.uniform(-0.6, 0.6, size=(3, 2))
    channels = [base[c] + slope[c, 0] * x + slope[c, 1] * y for c in range(3)]
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 12, size=(height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=PHONE_QUALITY)
    return buffer.getvalue()


def dataset_photos(target: Path, *, count: int, dataset: Path = DEFAULT_DATASET) -> PhotoSet:
    """Copy ``count`` dataset photos into ``target`` (or synthesise 168x224 ones)."""
    from PIL import Image

    target.mkdir(parents=True, exist_ok=True)
    files = _dataset_files(dataset, count)
    names: list[str] = []
    if files:
        for index, source in enumerate(files):
            name = f"dataset-{index:03d}.jpg"
            (target / name).write_bytes(source.read_bytes())
            names.append(name)
        origin = str(dataset)
    else:
        rng = np.random.default_rng(0)
        for index in range(count):
            name = f"dataset-{index:03d}.jpg"
            (target / name).write_bytes(_synthetic_jpeg(rng, 168, 224))
            names.append(name)
        origin = "synthetic (dataset not found)"
    with Image.open(target / names[0]) as first:
        width, height = first.size
    return PhotoSet("dataset", target, tuple(names), origin, width, height)


def phone_photos(source: PhotoSet, target: Path) -> PhotoSet:
    """Upscale each of ``source`` to a ~2000 px long side, quality-90 JPEG."""
    from PIL import Image

    target.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    width = height = 0
    for index, path in enumerate(source.paths()):
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        scale = PHONE_LONG_SIDE / max(rgb.size)
        size = (round(rgb.width * scale), round(rgb.height * scale))
        large = rgb.resize(size, Image.Resampling.BICUBIC)
        name = f"phone-{index:03d}.jpg"
        large.save(target / name, format="JPEG", quality=PHONE_QUALITY)
        names.append(name)
        width, height = size
    return PhotoSet("phone", target, tuple(names), f"upscaled {source.source}", width, height)


def make_photo_sets(
    target: Path, sizes: tuple[str, ...], *, count: int, dataset: Path = DEFAULT_DATASET
) -> dict[str, PhotoSet]:
    """The requested sizes; phone size is always derived from the dataset-size set."""
    unknown = set(sizes) - set(SIZES)
    if unknown:
        raise ValueError(f"unknown photo size(s) {sorted(unknown)}; choose from {SIZES}")
    small = dataset_photos(target, count=count, dataset=dataset)
    sets = {"dataset": small}
    if "phone" in sizes:
        sets["phone"] = phone_photos(small, target)
    return {size: sets[size] for size in sizes}
