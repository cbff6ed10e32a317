"""Turn encoded image bytes into the model's input row.

Decoding is judged by the bytes, never by a Content-Type: only JPEG, PNG, WebP
and GIF (first frame) are opened. The pixel count is read from the header and
checked before any pixel is decoded, so a small file declaring 30000x30000
pixels costs nothing. So are the bytes decoding will hold (pixels x the bytes
per pixel of the mode, and of the full-size conversion some modes need): a
few-hundred-KB RGBA PNG may need 160 MB. The decode itself is the reduced one
of :mod:`clothing.preprocessing`, which training and evaluation share: a JPEG (or
MPO) larger than the target is decoded at a reduced DCT scale (``draft``), other
formats are decoded and at once reduced by an integer factor to at least the
target, so every later step (EXIF orientation, flattening transparency onto
white, conversion to RGB) works on the small image, never on full-size copies;
then a plain bilinear resize to the model's width and height and its scaling.
This module adds the checks around those steps.

The count is of what decoding really holds, measured per format (docs/reliability.md):
a progressive JPEG keeps every DCT coefficient at full size whatever the ``draft``
scale (2 bytes a sample: 3 bytes a pixel for 4:2:0 colour, 8 for CMYK), and
libwebp decodes into buffers of its own (16 bytes a pixel in all). Work is
bounded too: a JPEG with more scans than real encoders write is refused before
decoding (each scan is one more pass over the coefficients), and PNG text chunks,
which nothing here reads, may inflate to little (Pillow's default is 64 MiB).

Everything here is CPU-bound and synchronous: callers run it in worker processes
(:mod:`.decode_pool`), which a deadline can stop.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from clothing import tracing
from clothing.gateway.errors import NotAnImage, TooLarge
from clothing.preprocessing import (
    JPEG_FORMATS,
    Preprocessing,
    finish_reduced,
    reduced_side,
    resized_pixels,
    scale_pixels,
    start_reduced,
)
from clothing.serving_layout import InputDtype

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
DEFAULT_MAX_PIXELS = 40_000_000
# Bytes decoding one image may hold when the caller names no budget (the gateway
# derives its own from the memory limit: GatewaySettings.max_decode_bytes).
DEFAULT_MAX_DECODE_BYTES = 256 * 1024 * 1024

# Bytes per pixel Pillow stores for a mode (4 for RGB, as for RGBA), plus those of
# the full-size copies reducing it makes: ``reduce`` takes neither "1", "P" nor
# 16-bit modes ("I;16" becomes "I", 4 more), and premultiplies alpha into a copy
# first (RGBA and LA: 4 more; measured, a 5000x5000 RGBA PNG peaked at +191 MB).
_DECODE_BYTES_PER_PIXEL = {
    "1": 2,
    "L": 1,
    "LA": 8,
    "RGBA": 8,
    "I;16": 6,
    "I;16B": 6,
    "I;16L": 6,
}
# Formats whose decoder fills buffers of its own that are then copied into the image:
# libwebp's animation decoder keeps its canvas and output beside Pillow's copy
# (measured: a 4000x4000 WebP peaked at +244 MB, 16 bytes a pixel).
_COPYING_DECODERS = {"WEBP": 4}

# Scans a JPEG may have. Cameras and most software write baseline JPEGs (1 scan, or
# one per component); libjpeg's progressive script writes 10 for colour, 6 for grey
# and 18 for CMYK, mozjpeg's optimised scripts about a dozen. Every scan is one more
# pass over the whole image's coefficients, so a file repeating a tiny scan
# thousands of times costs seconds per copy of the image; 32 leaves room for any
# real encoder.
MAX_JPEG_SCANS = 32
# A DCT coefficient: 16 bits.
_COEFFICIENT_BYTES = 2

# PNG text chunks (tEXt, zTXt, iTXt) and ICC profiles inflate while the header is
# read, before any pixel budget applies; nothing here reads them, so they may take
# little (Pillow's defaults: 1 MiB a chunk, 64 MiB an image).
PngImagePlugin.MAX_TEXT_CHUNK = 256 * 1024
PngImagePlugin.MAX_TEXT_MEMORY = 1024 * 1024

MIB = 1024 * 1024


@dataclass(frozen=True)
class InputSpec:
    """What the model wants: one NHWC RGB row of this size, dtype and scaling."""

    name: str
    height: int
    width: int
    dtype: InputDtype = "uint8"
    preprocessing: Preprocessing = "none"


def decode_rgb(
    data: bytes,
    *,
    target: tuple[int, int],
    max_pixels: int,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> Image.Image:
    """Decode to an upright RGB image of at least ``target`` (w, h) where the source is
    larger, holding at most ``max_decode_bytes`` at full size."""
    if not data:
        raise NotAnImage("the image is empty")
    try:
        with warnings.catch_warnings():
            # Our own cap below decides; Pillow's global bomb warning must not escape.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError:
        raise TooLarge(f"the image declares more than {max_pixels} pixels") from None
    except ValueError as error:
        if "MAX_TEXT" in str(error):  # Pillow names the limit it applied
            raise TooLarge(
                f"the PNG's text chunks inflate to more than {PngImagePlugin.MAX_TEXT_MEMORY} bytes"
            ) from None
        raise NotAnImage("the bytes are not a JPEG, PNG, WebP or GIF image") from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise NotAnImage("the bytes are not a JPEG, PNG, WebP or GIF image") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise NotAnImage("the image has no pixels")
    if width * height > max_pixels:
        raise TooLarge(f"the image is {width}x{height} pixels, the limit is {max_pixels} pixels")
    side = reduced_side(*target)
    try:
        coefficients = 0
        if image.format in JPEG_FORMATS:
            _check_scans(data)
            coefficients = coefficient_bytes(image)
        start_reduced(image, side)  # a JPEG header's size becomes the reduced one
        _check_decode_bytes(image, max_decode_bytes, coefficients)
        return finish_reduced(image, side)
    except (OSError, ValueError, SyntaxError, EOFError):
        raise NotAnImage("the image is truncated or corrupt") from None
    except Image.DecompressionBombError:
        raise TooLarge(f"the image declares more than {max_pixels} pixels") from None


def decode_bytes(image: Image.Image) -> int:
    """What decoding ``image`` (as opened, after any ``draft``) holds at full size."""
    width, height = image.size
    if image.mode == "P":  # becomes RGB (4 more), or RGBA (premultiplied: 8 more)
        per_pixel = 9 if "transparency" in image.info else 5
    else:
        per_pixel = _DECODE_BYTES_PER_PIXEL.get(image.mode, 4)
    return width * height * per_pixel * _COPYING_DECODERS.get(str(image.format), 1)


def coefficient_bytes(image: Image.Image) -> int:
    """What a progressive JPEG's full-size coefficient buffers hold (0 for a baseline
    one, which libjpeg decodes a row of blocks at a time); ``image`` as opened, before
    any ``draft``."""
    if not (image.info.get("progressive") or image.info.get("progression")):
        return 0
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * len(image.getbands())
    most_h = max(h for _, h, _, _ in layers)
    most_v = max(v for _, _, v, _ in layers)
    samples = sum(h * v for _, h, v, _ in layers) / (most_h * most_v)  # per pixel
    width, height = image.size
    return int(width * height * samples) * _COEFFICIENT_BYTES


def jpeg_scans(data: bytes) -> int:
    """The scans (SOS markers) of the first image in a JPEG stream, counted without
    decoding: header segments are skipped by their lengths (an EXIF thumbnail's scans
    are not counted), then markers are counted up to the end of the image (an MPO's
    later images are not either). Entropy-coded data never holds a marker: a 0xFF
    byte there is followed by 0x00 (stuffing) or a restart marker."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xDA:  # the first scan
            end = data.find(b"\xff\xd9", position)
            return data.count(b"\xff\xda", position, end if end >= 0 else len(data))
        if marker == 0xFF:  # fill byte
            position += 1
        elif 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return 0


def _check_scans(data: bytes) -> None:
    scans = jpeg_scans(data)
    if scans > MAX_JPEG_SCANS:
        raise TooLarge(
            f"the JPEG has {scans} scans, the limit is {MAX_JPEG_SCANS} "
            "(encoders write at most about 20)"
        )


def _check_decode_bytes(image: Image.Image, limit: int, coefficients: int = 0) -> None:
    needed = decode_bytes(image) + coefficients
    if needed > limit:
        width, height = image.size
        raise TooLarge(
            f"the image ({width}x{height} {image.mode}) needs {needed // MIB} MiB to decode, "
            f"the limit is {limit // MIB} MiB"
        )


def to_model_row(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """Resize to the model's size and scale as its preprocessing requires: ``[H, W, 3]``."""
    pixels = resized_pixels(image, spec.width, spec.height)
    if spec.preprocessing == "none":
        return pixels if spec.dtype == "uint8" else pixels.astype(np.float32)
    return scale_pixels(pixels, spec.preprocessing)


def prepare(
    data: bytes,
    spec: InputSpec,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
    stage_times: tracing.StageTimes | None = None,
) -> np.ndarray:
    """Bytes in, one model input row out (``[H, W, 3]`` of ``spec.dtype``); the decode and
    resize stages' times go to ``stage_times`` when given (see ``tracing.stage``)."""
    with tracing.stage("decode", stage_times):
        image = decode_rgb(
            data,
            target=(spec.width, spec.height),
            max_pixels=max_pixels,
            max_decode_bytes=max_decode_bytes,
        )
    with tracing.stage("resize", stage_times):
        return to_model_row(image, spec)
