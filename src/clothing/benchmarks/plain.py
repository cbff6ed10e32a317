"""The plain preprocessing the baseline and LitServe apps use: full decode, then resize.

This is what a first version of an image service does: let Pillow decode every pixel
of the upload, convert to RGB and resize to the model's input. The gateway's own
decode path is compared against this.
"""

from __future__ import annotations

import base64
import binascii
import io
import urllib.request
from typing import Any

import numpy as np


class BadImageError(ValueError):
    """The request does not carry a decodable image."""


def plain_fetch(url: str) -> bytes:
    """Download an image the simple way: ``urllib``, http(s) only, no address checks."""
    if not url.startswith(("http://", "https://")):
        raise BadImageError("only http and https URLs are fetched")
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - scheme checked above
            return bytes(answer.read(20 * 1024 * 1024))
    except OSError as error:
        raise BadImageError(f"cannot fetch {url}: {error}") from error


def plain_decode(data: bytes, width: int, height: int) -> np.ndarray:
    """Encoded image bytes -> uint8 ``[height, width, 3]`` RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise BadImageError(f"cannot decode image: {error}") from error
    resized = rgb.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def image_bytes_from_body(body: Any, fetch: Any) -> bytes:
    """``{"image_b64": ...}`` or ``{"url": ...}`` -> image bytes (``fetch(url)`` for URLs)."""
    if not isinstance(body, dict):
        raise BadImageError('send a JSON object with "image_b64" or "url"')
    if isinstance(body.get("image_b64"), str):
        try:
            return base64.b64decode(body["image_b64"], validate=True)
        except (binascii.Error, ValueError) as error:
            raise BadImageError(f"image_b64 is not valid base64: {error}") from error
    if isinstance(body.get("url"), str):
        data = fetch(body["url"])
        if not isinstance(data, bytes):
            raise BadImageError("fetch returned no bytes")
        return data
    raise BadImageError('send a JSON object with "image_b64" or "url"')


def class_answer(probabilities: np.ndarray, classes: tuple[str, ...]) -> dict[str, Any]:
    """One row of probabilities -> the class JSON every system answers with."""
    names = classes or tuple(str(index) for index in range(len(probabilities)))
    scores = {name: float(value) for name, value in zip(names, probabilities, strict=False)}
    best = int(np.argmax(probabilities))
    return {"class": names[best], "score": float(probabilities[best]), "predictions": scores}
