"""What a photo goes through before a model sees it, the same everywhere.

The gateway (serving), training and evaluation, quantization's calibration and
the conversion of Keras models all take their pixels from here, so the tensor a
model was measured on is the tensor it is served:

1. the reduced decode: a JPEG larger than the model's side is decoded at a
   reduced DCT scale (``draft``), any other image at once shrunk by an integer
   factor (``reduce``, a box average) to at least that side, then turned upright
   (EXIF orientation) and RGB (transparency flattened onto white, 16-bit grey
   scaled to 8 bits): :func:`start_reduced`, :func:`finish_reduced`;
2. a plain bilinear resize to the model's width and height, aspect ratio not
   kept: :func:`resized_pixels`;
3. the model's declared scaling of the uint8 pixels (``none``, ``xception``,
   ``imagenet``): :func:`scale_pixels`, whose steps ``clothing convert`` also
   builds into graphs.

The gateway adds its own checks (pixel and memory caps, JPEG scans) between the
steps; :func:`photo_pixels` is the same path for a trusted photo on disk. Pillow
is imported only by the functions that decode or resize, since the model server
reads the names and the scaling without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

Preprocessing = Literal["none", "xception", "imagenet"]
PREPROCESSINGS: tuple[Preprocessing, ...] = ("none", "xception", "imagenet")

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# What each preprocessing does to float32 pixels (0..255), step by step: ("div" | "sub",
# operand broadcast over the channel axis). `clothing convert --serving-input uint8` builds
# the same steps into a graph, so both give the same numbers.
SCALING_STEPS: dict[Preprocessing, tuple[tuple[str, np.ndarray], ...]] = {
    "none": (),
    "xception": (("div", np.array(127.5, np.float32)), ("sub", np.array(1.0, np.float32))),
    "imagenet": (
        ("div", np.array(255.0, np.float32)),
        ("sub", _IMAGENET_MEAN),
        ("div", _IMAGENET_STD),
    ),
}

# Modes ``reduce`` cannot take, and what they are reduced as.
_REDUCIBLE_AS = {"1": "L", "I;16": "I", "I;16B": "I", "I;16L": "I"}
JPEG_FORMATS = ("JPEG", "MPO")


def scale_pixels(pixels: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """uint8 pixels -> float32 scaled as ``preprocessing`` says (``SCALING_STEPS``)."""
    scaled = pixels.astype(np.float32)
    for operation, operand in SCALING_STEPS[preprocessing]:
        scaled = scaled / operand if operation == "div" else scaled - operand
    return scaled


def reduced_side(width: int, height: int) -> int:
    """The side a photo for a ``width`` x ``height`` model is reduced to at least (square, so
    it stays large enough after an EXIF rotation)."""
    return max(width, height)


def start_reduced(image: Image.Image, side: int) -> None:
    """Ask an opened JPEG to decode at the smallest DCT scale that keeps ``side``: the
    header's size becomes the reduced one (other formats are reduced after decoding)."""
    if image.format in JPEG_FORMATS:
        image.draft("RGB", (side, side))


def finish_reduced(image: Image.Image, side: int) -> Image.Image:
    """Decode ``image`` (opened, after :func:`start_reduced`) to an upright RGB image of at
    least ``side`` along each axis where the source is larger."""
    from PIL import ExifTags, ImageOps

    image.load()
    orientation = image.getexif().get(ExifTags.Base.Orientation)
    small = _reduced(image, side)
    if orientation:
        small.getexif()[ExifTags.Base.Orientation] = orientation
    return _to_rgb(ImageOps.exif_transpose(small))


def _reduced(image: Image.Image, side: int) -> Image.Image:
    """``image`` shrunk along each axis by the largest integer factor that keeps that
    side >= ``side`` (the model's resize ignores the aspect ratio anyway), so that a
    long strip is reduced too.

    The full-size image is released as soon as the small one exists; palette images
    become RGB(A) first (their transparency kept), 1-bit and 16-bit ones L and I.
    """
    factor = (max(1, image.width // side), max(1, image.height // side))
    if factor == (1, 1):
        return image
    if image.mode == "P":
        working = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in _REDUCIBLE_AS:
        working = image.convert(_REDUCIBLE_AS[image.mode])
    else:
        working = image
    return working.reduce(factor)


def _to_rgb(image: Image.Image) -> Image.Image:
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale PNG: scale to 8 bits instead of clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        peak = max(float(array.max()), 1.0)
        scaled = (array * (255.0 / max(peak, 255.0))).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    return image.convert("RGB")


def resized_pixels(image: Image.Image, width: int, height: int) -> np.ndarray:
    """Plain bilinear resize to ``width`` x ``height`` (aspect ratio not kept), uint8 HWC."""
    from PIL import Image

    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def open_reduced(path: Path, side: int) -> Image.Image:
    """A trusted photo file, decoded reduced to at least ``side``, upright and RGB (without
    the gateway's caps on hostile files)."""
    from PIL import Image

    with Image.open(path) as image:
        start_reduced(image, side)
        return finish_reduced(image, side)


def open_upright(path: Path) -> Image.Image:
    """A trusted photo file at its full size, upright and RGB as :func:`finish_reduced`
    makes it (for random crops, which need every pixel)."""
    from PIL import Image

    with Image.open(path) as image:
        return finish_reduced(image, max(image.size))


def photo_pixels(path: Path, width: int, height: int) -> np.ndarray:
    """A trusted photo file as a ``width`` x ``height`` model sees it: uint8 HWC, exactly
    the gateway's pixels for the same bytes."""
    return resized_pixels(open_reduced(path, reduced_side(width, height)), width, height)
