"""Preprocessing cost per image: the gateway's decode path against plain Pillow.

Both turn the same encoded photo into the model's ``[H, W, 3]`` input; the gateway
decodes JPEG at a reduced DCT scale when the photo is larger than the model's input,
the plain path decodes every pixel and then resizes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from clothing.benchmarks.photos import PhotoSet
from clothing.benchmarks.plain import plain_decode
from clothing.serving_layout import ModelMetadata


def _median_ms(decode: Callable[[bytes], np.ndarray], photos: list[bytes], rounds: int) -> float:
    for data in photos[:2]:
        decode(data)  # warm-up: first decode loads Pillow's plugins
    timings = []
    for _ in range(rounds):
        for data in photos:
            began = time.perf_counter()
            decode(data)
            timings.append(time.perf_counter() - began)
    return statistics.median(timings) * 1000.0


def gateway_input_spec(info: ModelMetadata) -> Any:
    """The gateway's ``InputSpec`` for this model (imported late: the gateway is optional)."""
    from clothing.gateway.imaging import InputSpec

    if info.preprocessing == "none":
        return InputSpec(info.input_name, info.height, info.width, "uint8", "none")
    return InputSpec(info.input_name, info.height, info.width, "float32", info.preprocessing)


def measure_preprocessing(
    info: ModelMetadata, photos: PhotoSet, *, rounds: int = 3
) -> dict[str, float]:
    """Median ms per image for both paths on ``photos``, and the speed-up."""
    from clothing.gateway.imaging import prepare

    spec = gateway_input_spec(info)
    encoded = [path.read_bytes() for path in photos.paths()]
    ours = _median_ms(lambda data: prepare(data, spec), encoded, rounds)
    plain = _median_ms(lambda data: plain_decode(data, info.width, info.height), encoded, rounds)
    return {
        "photos": len(encoded),
        "photo_width": photos.width,
        "photo_height": photos.height,
        "gateway_ms": round(ours, 3),
        "plain_pillow_ms": round(plain, 3),
        "speedup": round(plain / ours, 2) if ours > 0 else float("nan"),
    }
