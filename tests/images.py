"""Every image the tests draw, and its bytes in any format Pillow writes.

Flat colours, uniform noise, noisy colours, smooth photo-like fields and a few
images with one property to test (transparency, two frames, EXIF rotation).
Hostile files (declared sizes, decode bombs) are built from these in
``tests/hardening/bombs.py``. A seed means the same pixels wherever it is used.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image

Colour = tuple[int, int, int]
Size = tuple[int, int]  # width, height, as Pillow counts


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """``image`` as a file in ``fmt`` (``"JPEG"``, ``"PNG"``, ...) with Pillow's options."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    """``data`` as the base64 text of an ``image_b64`` field."""
    return base64.b64encode(data).decode()


def solid(colour: Colour = (200, 30, 30), size: Size = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, colour)


def noise(size: Size, seed: int | np.random.Generator = 0, *, channels: int = 3) -> Image.Image:
    """Uniform random pixels (RGB, or RGBA with 4 ``channels``): incompressible."""
    width, height = size
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)
    return Image.fromarray(pixels)


def noisy(colour: ArrayLike, size: Size, spread: int, rng: np.random.Generator) -> Image.Image:
    """``colour`` with noise in [-spread, spread) on every sample: one class of a toy dataset."""
    width, height = size
    shift = rng.integers(-spread, spread, size=(height, width, 3))
    return Image.fromarray(np.clip(np.array(colour) + shift, 0, 255).astype(np.uint8))


def photo_like(size: Size, rng: np.random.Generator) -> Image.Image:
    """A smooth colour field with some texture: image-like, not noise."""
    width, height = size
    coarse = rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
    field = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    texture = rng.integers(-20, 21, size=(height, width, 3))
    return Image.fromarray(
        np.clip(np.asarray(field, dtype=np.int16) + texture, 0, 255).astype(np.uint8)
    )


def jpeg(colour: Colour = (200, 30, 30), size: Size = (64, 48), quality: int = 95) -> bytes:
    """A flat-colour JPEG."""
    return encode(solid(colour, size), "JPEG", quality=quality)


def noise_jpeg(seed: int = 0, size: Size = (48, 40), quality: int = 90) -> bytes:
    return encode(noise(size, seed), "JPEG", quality=quality)


def noise_png(seed: int = 0, size: Size = (48, 40)) -> bytes:
    """A noise PNG: about 3 bytes a pixel however it is compressed."""
    return encode(noise(size, seed), "PNG")


def halves(top: Colour, bottom: Colour) -> Image.Image:
    """A 60x40 image, top half one colour, bottom half another (to see rotations)."""
    image = Image.new("RGB", (60, 40), top)
    image.paste(Image.new("RGB", (60, 20), bottom), (0, 20))
    return image


def png_rgba() -> bytes:
    """40x40, transparent but for an opaque green left half."""
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    image.paste(Image.new("RGBA", (20, 40), (20, 160, 40, 255)), (0, 0))
    return encode(image, "PNG")


def webp() -> bytes:
    return encode(solid((30, 60, 220)), "WEBP", lossless=True)


def gif_two_frames() -> bytes:
    """A GIF whose first frame is red and second blue: the first must be used."""
    frames = [solid((250, 0, 0)), solid((0, 0, 250))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def jpeg_rotated_180() -> bytes:
    """Stored with red on top, blue below; EXIF orientation 3 says "turn 180°"."""
    exif = Image.Exif()
    exif[0x0112] = 3
    return encode(halves((250, 0, 0), (0, 0, 250)), "JPEG", quality=95, exif=exif.tobytes())
