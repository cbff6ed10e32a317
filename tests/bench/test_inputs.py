import base64
import json

import numpy as np
import pytest
from PIL import Image

from clothing.benchmarks.photos import make_photo_sets
from clothing.benchmarks.plain import BadImageError, image_bytes_from_body, plain_decode
from clothing.serving_layout import LayoutError, read_metadata
from tests.fixtures import CLASSES, build_test_model
from tests.images import jpeg


def _jpeg(width: int, height: int) -> bytes:
    return jpeg((200, 10, 30), (width, height), quality=75)


def test_model_info_reads_newest_version(tmp_path):
    build_test_model(tmp_path / "1", height=16, width=16)
    build_test_model(tmp_path / "3", height=24, width=40)
    (tmp_path / "10").mkdir()  # a version folder with no model is skipped
    info = read_metadata(tmp_path)
    assert (info.version, info.height, info.width) == (3, 24, 40)
    assert info.classes == CLASSES
    assert (info.input_name, info.output_name) == ("image", "probabilities")


def test_model_info_without_metadata_reads_the_graph(tmp_path):
    build_test_model(tmp_path / "1", height=20, width=28, metadata=False)
    (tmp_path / "1" / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    info = read_metadata(tmp_path)
    assert (info.height, info.width, info.classes) == (20, 28, CLASSES)


def test_model_info_errors_are_clear(tmp_path):
    with pytest.raises(LayoutError, match="not a directory"):
        read_metadata(tmp_path / "missing")
    with pytest.raises(LayoutError, match=r"no <version>/model\.onnx"):
        read_metadata(tmp_path)
    build_test_model(tmp_path / "1")
    metadata = json.loads((tmp_path / "1" / "metadata.json").read_text())
    metadata["input"]["preprocessing"] = "sepia"
    (tmp_path / "1" / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(LayoutError, match="sepia"):
        read_metadata(tmp_path)


def test_preprocessing_modes_scale_pixels(tmp_path):
    build_test_model(tmp_path / "1")
    info = read_metadata(tmp_path)
    pixels = np.array([[[[0, 255, 127]]]], dtype=np.uint8)
    assert info.to_model_input(pixels) is pixels
    xception = info.__class__(**{**info.__dict__, "preprocessing": "xception"})
    np.testing.assert_allclose(
        xception.to_model_input(pixels)[0, 0, 0], [-1.0, 1.0, -0.00392], atol=1e-4
    )


def test_plain_decode_and_request_bodies():
    data = _jpeg(300, 200)
    pixels = plain_decode(data, 32, 24)
    assert pixels.shape == (24, 32, 3)
    assert pixels.dtype == np.uint8
    body = {"image_b64": base64.b64encode(data).decode()}
    assert image_bytes_from_body(body, fetch=None) == data
    assert image_bytes_from_body({"url": "http://x/y.jpg"}, fetch=lambda url: b"abc") == b"abc"
    with pytest.raises(BadImageError, match="base64"):
        image_bytes_from_body({"image_b64": "***"}, fetch=None)
    with pytest.raises(BadImageError, match="JSON object"):
        image_bytes_from_body([1], fetch=None)
    with pytest.raises(BadImageError, match="cannot decode"):
        plain_decode(b"not an image", 8, 8)


def test_photo_sets_make_phone_size_from_dataset_size(tmp_path):
    sets = make_photo_sets(tmp_path, ("dataset", "phone"), count=2, dataset=tmp_path / "none")
    assert sets["dataset"].source.startswith("synthetic")
    assert (sets["dataset"].width, sets["dataset"].height) == (168, 224)
    phone = sets["phone"]
    assert max(phone.width, phone.height) == 2000
    for path in phone.paths():
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert max(image.size) == 2000
    with pytest.raises(ValueError, match="unknown photo size"):
        make_photo_sets(tmp_path, ("huge",), count=1)
