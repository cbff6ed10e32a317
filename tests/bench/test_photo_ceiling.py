"""The in-process photo-in ceiling decodes real JPEGs and runs a real ONNX model."""

import numpy as np

from clothing.benchmarks.photo_ceiling import PhotoCeiling, decode_row
from clothing.serving_layout import read_metadata
from tests.fixtures import build_test_model
from tests.images import noise_jpeg


def _jpeg(width: int, height: int) -> bytes:
    return noise_jpeg(width, (width, height))


def test_a_large_photo_is_decoded_at_a_reduced_scale_and_resized() -> None:
    row = decode_row(_jpeg(800, 600), 32, 32)
    assert row.shape == (32, 32, 3)
    assert row.dtype == np.uint8


def test_blocks_count_every_image_of_every_batch(tmp_path) -> None:
    build_test_model(tmp_path / "1", height=32, width=32)
    info = read_metadata(tmp_path)
    ceiling = PhotoCeiling(
        info, [_jpeg(64, 48), _jpeg(40, 90)], ["CPUExecutionProvider"], batch_size=4
    )
    try:
        by_count = ceiling.run(10, None)
        by_time = ceiling.run(None, 0.2)
    finally:
        ceiling.close()
    assert by_count.requests == 3  # ceil(10 / 4) batches
    assert by_count.images_per_s == by_count.requests * 4 / by_count.elapsed_s
    assert by_time.requests >= 1
    assert by_time.errors == 0
