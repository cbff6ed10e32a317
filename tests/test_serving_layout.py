"""The model folder layout: what writers declare is what readers get back."""

import json

import numpy as np
import pytest

from clothing.serving_layout import (
    CLASSES_FILE,
    METADATA_FILE,
    MODEL_FILE,
    LayoutError,
    declare,
    find_model_file,
    read_declared,
    read_metadata,
    version_files,
    version_to_write,
    write_version,
)

CLASSES = ("hat", "shoes")


def _no_graph() -> object:
    raise AssertionError("the graph was opened although metadata.json says everything")


def _declared(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "classes": CLASSES,
        "input_name": "pixels",
        "input_dtype": "float32",
        "height": 30,
        "width": 40,
        "preprocessing": "imagenet",
        "output_name": "scores",
    }
    return {"name": "m", **declare(**{**fields, **changes}), "precision": "int8"}  # type: ignore[arg-type]


def test_what_a_writer_declares_is_read_back(tmp_path):
    files = version_files(b"not read", CLASSES, _declared())
    write_version(tmp_path, 3, files, overwrite=False)
    info = read_metadata(tmp_path, graph=_no_graph)
    assert info.model_file == tmp_path / "3" / MODEL_FILE
    assert info.version == 3
    assert (info.input_name, info.input_dtype, info.input_layout) == ("pixels", "float32", "NHWC")
    assert (info.height, info.width, info.output_name) == (30, 40, "scores")
    assert (info.classes, info.preprocessing, info.precision) == (CLASSES, "imagenet", "int8")
    assert (tmp_path / "3" / CLASSES_FILE).read_text() == "hat\nshoes\n"


def test_classes_txt_supplies_classes_metadata_json_lacks(tmp_path):
    (tmp_path / METADATA_FILE).write_text(json.dumps({"input": {"height": 2}}))
    (tmp_path / CLASSES_FILE).write_text("a\n\nb\n")
    assert read_declared(tmp_path) == {"input": {"height": 2}, "classes": ["a", "b"]}
    (tmp_path / METADATA_FILE).write_text("[1]")
    with pytest.raises(LayoutError, match="JSON object"):
        read_declared(tmp_path)


def test_the_newest_version_with_a_model_is_found(tmp_path):
    for version in (2, 10):
        write_version(tmp_path, version, {MODEL_FILE: b"x"}, overwrite=False)
    (tmp_path / "11").mkdir()  # no model in it
    assert find_model_file(tmp_path) == tmp_path / "10" / MODEL_FILE
    assert find_model_file(tmp_path / "2") == tmp_path / "2" / MODEL_FILE
    assert find_model_file(tmp_path / "2" / MODEL_FILE) == tmp_path / "2" / MODEL_FILE
    with pytest.raises(LayoutError, match=r"no model\.onnx at .*not a directory"):
        find_model_file(tmp_path / "missing")
    with pytest.raises(LayoutError, match=r"no <version>/model\.onnx"):
        find_model_file(tmp_path / "11")


def test_the_version_to_write(tmp_path):
    assert version_to_write(tmp_path, None, overwrite=False) == 1
    write_version(tmp_path, 1, {MODEL_FILE: b"x"}, overwrite=False)
    assert version_to_write(tmp_path, None, overwrite=False) == 2
    with pytest.raises(LayoutError, match="already holds a model"):
        version_to_write(tmp_path, 1, overwrite=False)
    assert version_to_write(tmp_path, 1, overwrite=True) == 1
    with pytest.raises(LayoutError, match="positive"):
        version_to_write(tmp_path, 0, overwrite=True)


def test_unknown_preprocessing_and_bad_sizes_are_refused(tmp_path):
    write_version(tmp_path, 1, version_files(b"x", CLASSES, _declared()), overwrite=False)
    metadata = json.loads((tmp_path / "1" / METADATA_FILE).read_text())
    metadata["input"]["preprocessing"] = "sepia"
    (tmp_path / "1" / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(LayoutError, match="sepia"):
        read_metadata(tmp_path, graph=_no_graph)
    metadata["input"].update(preprocessing="none", height="tall")
    (tmp_path / "1" / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(LayoutError, match="bad input section"):
        read_metadata(tmp_path, graph=_no_graph)


def test_model_input_is_scaled_as_declared(tmp_path):
    write_version(tmp_path, 1, version_files(b"x", CLASSES, _declared()), overwrite=False)
    info = read_metadata(tmp_path, graph=_no_graph)
    pixels = np.full((1, 1, 1, 3), 255, dtype=np.uint8)
    scaled = info.to_model_input(pixels)
    np.testing.assert_allclose(
        scaled[0, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225], rtol=1e-5
    )
    plain = info.__class__(**{**info.__dict__, "preprocessing": "none"})
    assert plain.to_model_input(pixels) is pixels
