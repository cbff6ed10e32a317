"""Fuzz the gateway's image decode path: bytes -> decode -> resize -> model row.

    python fuzz/fuzz_images.py fuzz/corpus/images -max_total_time=60      # make fuzz

Only NotAnImage and TooLarge (documented 400 / 413 answers) may escape.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from clothing.gateway.errors import NotAnImage, TooLarge
    from clothing.gateway.imaging import InputSpec, prepare

SPEC = InputSpec("image", 32, 32)
# Far below the default, so a fuzzed header cannot make a run slow by being legal.
MAX_PIXELS = 4_000_000


def test_one_input(data: bytes) -> None:
    try:
        row = prepare(data, SPEC, max_pixels=MAX_PIXELS)
    except (NotAnImage, TooLarge):
        return
    if row.shape != (32, 32, 3):
        raise AssertionError(f"row shape {row.shape}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
