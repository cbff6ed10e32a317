"""Turn encoded image bytes into the model's input row.

Decoding is judged by the bytes, never by a Content-Type: only JPEG, PNG, WebP
and GIF (first frame) are opened. The pixel count is read from the header and
checked before any pixel is decoded, so a small file declaring 30000x30000
pixels costs nothing. A JPEG larger than the target is decoded at a reduced
DCT scale (``draft``). EXIF orientation is applied, transparency is flattened
onto white, and the result is resized with a plain bilinear resize to the
model's width and height (how the model was trained).

Everything here is CPU-bound and synchronous: callers run it in a worker pool.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clothing.gateway.errors import NotAnImage, TooLarge

Preprocessing = Literal["none", "xception", "imagenet"]
PREPROCESSINGS: tuple[Preprocessing, ...] = ("none", "xception", "imagenet")
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
DEFAULT_MAX_PIXELS = 40_000_000

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


@dataclass(frozen=True)
class InputSpec:
    """What the model wants: one NHWC RGB row of this size, dtype and scaling."""

    name: str
    height: int
    width: int
    dtype: Literal["uint8", "float32"] = "uint8"
    preprocessing: Preprocessing = "none"


def decode_rgb(data: bytes, *, target: tuple[int, int], max_pixels: int) -> Image.Image:
    """Decode to an upright RGB image; ``target`` (w, h) lets JPEG decode at a reduced scale."""
    if not data:
        raise NotAnImage("the image is empty")
    try:
        with warnings.catch_warnings():
            # Our own cap below decides; Pillow's global bomb warning must not escape.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError:
        raise TooLarge(f"the image declares more than {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise NotAnImage("the bytes are not a JPEG, PNG, WebP or GIF image") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise NotAnImage("the image has no pixels")
    if width * height > max_pixels:
        raise TooLarge(f"the image is {width}x{height} pixels, the limit is {max_pixels} pixels")
    try:
        if image.format == "JPEG":
            # Requested square so the scale stays large enough after an EXIF rotation.
            side = max(target)
            image.draft("RGB", (side, side))
        image.load()
        upright = ImageOps.exif_transpose(image)
        return _to_rgb(upright)
    except (OSError, ValueError, SyntaxError, EOFError):
        raise NotAnImage("the image is truncated or corrupt") from None
    except Image.DecompressionBombError:
        raise TooLarge(f"the image declares more than {max_pixels} pixels") from None


def _to_rgb(image: Image.Image) -> Image.Image:
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


def to_model_row(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """Resize to the model's size and scale as its preprocessing requires: ``[H, W, 3]``."""
    resized = image.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    pixels = np.asarray(resized, dtype=np.uint8)
    if spec.preprocessing == "none":
        return pixels if spec.dtype == "uint8" else pixels.astype(np.float32)
    return scale_pixels(pixels, spec.preprocessing)


def scale_pixels(pixels: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """uint8 pixels -> float32 scaled as ``preprocessing`` says (``SCALING_STEPS``)."""
    scaled = pixels.astype(np.float32)
    for operation, operand in SCALING_STEPS[preprocessing]:
        scaled = scaled / operand if operation == "div" else scaled - operand
    return scaled


def prepare(data: bytes, spec: InputSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes in, one model input row out (``[H, W, 3]`` of ``spec.dtype``)."""
    image = decode_rgb(data, target=(spec.width, spec.height), max_pixels=max_pixels)
    return to_model_row(image, spec)
