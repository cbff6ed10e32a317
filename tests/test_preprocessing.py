"""One preprocessing for every path: the gateway, training, evaluation, quantization's
calibration and conversion give the same tensor for the same photo, whatever its size,
format or orientation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clothing.gateway.imaging import InputSpec, prepare
from clothing.precision.quantize import calibration_photos
from clothing.preprocessing import photo_pixels, scale_pixels
from clothing.training.data import LabelledImages, load_batch
from clothing.training.live import plain_pixels

SIDE = 64


def photo(size: tuple[int, int], seed: int) -> Image.Image:
    """Smooth gradients and noise: a photo-like image whose every resize differs."""
    width, height = size
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    pixels = (x * [1.0, 0.3, 0.6] + y * [0.2, 0.9, 0.4]) / 1.3 + rng.normal(
        0, 12, (height, width, 3)
    )
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def save(image: Image.Image, path: Path, kind: str) -> Path:
    if kind == "jpeg":
        image.save(path, "JPEG", quality=90)
    elif kind == "progressive":
        image.save(path, "JPEG", quality=90, progressive=True)
    elif kind == "rotated":  # EXIF orientation 6: the camera was turned
        exif = Image.Exif()
        exif[0x0112] = 6
        image.save(path, "JPEG", quality=90, exif=exif)
    elif kind == "png":
        image.save(path, "PNG")
    elif kind == "transparent":
        rgba = image.convert("RGBA")
        rgba.putalpha(Image.linear_gradient("L").resize(image.size))
        rgba.save(path, "PNG")
    return path


# Below the side, under twice it (no reduction), and 2.5x, 4.5x and 9x it (reduced decode).
SIZES = [(48, 40), (90, 120), (160, 130), (300, 220), (600, 420)]
KINDS = ["jpeg", "progressive", "rotated", "png", "transparent"]


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("kind", KINDS)
def test_training_and_the_gateway_see_the_same_tensor(
    size: tuple[int, int], kind: str, tmp_path: Path
) -> None:
    path = save(photo(size, seed=size[0]), tmp_path / f"photo.{kind}", kind)
    served = prepare(path.read_bytes(), InputSpec("image", SIDE, SIDE))
    assert served.dtype == np.uint8
    images = LabelledImages(classes=("only",), paths=(path,), labels=(0,))
    np.testing.assert_array_equal(photo_pixels(path, SIDE, SIDE), served)
    np.testing.assert_array_equal(load_batch([path], SIDE, SIDE)[0], served)  # evaluate, export
    np.testing.assert_array_equal(plain_pixels(images, SIDE)[0].numpy(), served)
    scaled = prepare(path.read_bytes(), InputSpec("image", SIDE, SIDE, "float32", "imagenet"))
    np.testing.assert_array_equal(scale_pixels(served, "imagenet"), scaled)


def test_calibration_photos_are_the_gateways(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    paths = []
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for index in range(8):
            image = photo((120 + 40 * index, 90 + 30 * index), seed=index)
            paths.append(save(image, folder / label / f"{index}.jpg", "jpeg"))
    calibration = calibration_photos(
        folder, input_name="image", height=SIDE, width=SIDE, preprocessing="xception", count=16
    )
    spec = InputSpec("image", SIDE, SIDE, "float32", "xception")
    expected = np.stack([prepare(path.read_bytes(), spec) for path in sorted(paths)])
    np.testing.assert_array_equal(calibration.pixels, expected)
