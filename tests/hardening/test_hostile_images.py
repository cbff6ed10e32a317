"""Decompression bombs in every format, and property tests of the image decode path."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from clothing.gateway.errors import NotAnImage, TooLarge
from clothing.gateway.imaging import DEFAULT_MAX_PIXELS, InputSpec, prepare
from tests.images import encode, noise, solid

from . import bombs
from .helpers import process_stats

SPEC = InputSpec("image", 32, 32)
FORMATS = ("PNG", "JPEG", "WEBP", "GIF")


@pytest.mark.parametrize("kind", sorted(bombs.BOMBS))
def test_bomb_is_refused_before_decoding(kind: str) -> None:
    data = bombs.BOMBS[kind]()
    assert bombs.DECLARED_PIXELS[kind] > DEFAULT_MAX_PIXELS
    assert len(data) < 2_000
    before = process_stats(os.getpid())
    started = time.monotonic()
    with pytest.raises(TooLarge) as caught:
        prepare(data, SPEC)
    elapsed = time.monotonic() - started
    after = process_stats(os.getpid())
    assert "pixels" in caught.value.message
    assert elapsed < 0.5, elapsed
    # Nothing near width x height x 3 bytes was allocated (that would be gigabytes).
    assert after.rss_kib - before.rss_kib < 20_000, (before, after)


@pytest.mark.parametrize("kind", sorted(bombs.BOMBS))
def test_under_the_limit_the_same_header_trick_is_only_corrupt(kind: str) -> None:
    # 16x16 declared over an 8x8 image: allowed size, so it decodes or is reported corrupt.
    maker: Callable[..., bytes] = bombs.BOMBS[kind]
    data = maker(16, 16)
    try:
        row = prepare(data, SPEC)
    except NotAnImage:
        return
    assert row.shape == (32, 32, 3)


images = st.builds(
    lambda w, h, mode, seed: noise((w, h), seed, channels=4).convert(mode),
    st.integers(1, 48),
    st.integers(1, 48),
    st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "CMYK"]),
    st.integers(0, 2**32 - 1),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images, fmt=st.sampled_from(FORMATS))
def test_every_valid_image_becomes_one_model_row(image: Image.Image, fmt: str) -> None:
    try:
        data = encode(image, fmt)
    except (OSError, ValueError, KeyError):
        return  # Pillow cannot write this mode in this format
    row = prepare(data, SPEC)
    assert row.shape == (32, 32, 3)
    assert row.dtype == np.uint8


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(FORMATS),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    cut=st.integers(0, 10_000),
)
def test_corrupted_images_fail_only_with_documented_errors(
    fmt: str, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(encode(solid((90, 20, 200), (40, 30)), fmt))
    for offset, value in edits:
        data[offset % len(data)] = value
    damaged = bytes(data[: max(1, cut % (len(data) + 1))])
    try:
        row = prepare(damaged, SPEC)
    except (NotAnImage, TooLarge):
        return
    assert row.shape == (32, 32, 3)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_fail_only_with_documented_errors(data: bytes) -> None:
    for prefix in (
        b"",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff",
        b"GIF89a",
        b"RIFF\x00\x00\x00\x00WEBP",
    ):
        try:
            row = prepare(prefix + data, SPEC)
        except (NotAnImage, TooLarge):
            continue
        assert row.shape == (32, 32, 3)
