"""The model folder layout: what writers declare is what readers get back."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clothing.serving_layout import (
    CLASSES_FILE,
    METADATA_FILE,
    MODEL_FILE,
    GraphFacts,
    GraphTensor,
    LayoutError,
    MetadataError,
    ModelInterface,
    NeedsGraph,
    declare,
    describe_interface,
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


# describe_interface: the one reader of the metadata schema, fed by files or by a server.

IMAGE_IN = GraphTensor("pixels", "uint8", (-1, 30, 40, 3))
GRAPH = GraphFacts(inputs=(IMAGE_IN,), outputs=("scores",))


def test_a_complete_declaration_needs_no_graph():
    declared = _declared()
    interface = describe_interface(declared, None)
    assert interface == ModelInterface(
        classes=CLASSES,
        input_name="pixels",
        height=30,
        width=40,
        output_name="scores",
        preprocessing="imagenet",
        input_dtype="float32",
        precision="int8",
    )


@pytest.mark.parametrize("missing", ["name", "dtype", "height", "width"])
def test_an_incomplete_declaration_asks_for_the_graph(missing):
    declared = _declared()
    del declared["input"][missing]  # type: ignore[attr-defined]
    with pytest.raises(NeedsGraph):
        describe_interface(declared, None)
    assert describe_interface(declared, GRAPH).input_name == "pixels"


def test_the_graph_wins_where_it_is_definite():
    declared = {"input": {"name": "other", "dtype": "float32", "height": 3, "width": 4}}
    interface = describe_interface(declared, GRAPH)
    assert (interface.input_name, interface.input_dtype) == ("pixels", "uint8")
    assert (interface.height, interface.width, interface.output_name) == (30, 40, "scores")
    assert (interface.preprocessing, interface.classes) == ("none", ())


def test_the_declaration_fills_what_the_graph_leaves_open():
    graph = GraphFacts(
        inputs=(
            GraphTensor("a", "uint8", (-1, 8, 8, 3)),
            GraphTensor("b", "float32", (-1, -1, -1, 3)),
        ),
        outputs=("logits", "probabilities"),
    )
    # Server metadata arrives through a protobuf Struct: whole numbers as floats.
    declared = {"input": {"name": "b", "height": 224.0, "width": "160"}, "classes": ["x", 1]}
    interface = describe_interface(declared, graph)
    assert (interface.input_name, interface.height, interface.width) == ("b", 224, 160)
    assert interface.output_name == "probabilities"  # the project's name, among several
    assert interface.preprocessing == "xception"  # a float input that says nothing
    assert interface.classes == ("x", "1")


@pytest.mark.parametrize(
    ("declared", "graph", "message"),
    [
        ({"input": {"preprocessing": "sepia"}}, GRAPH, "unknown preprocessing 'sepia'"),
        ({}, GraphFacts((GraphTensor("s", None, (-1,)),), ("y",)), "'s' has an unsupported dtype"),
        ({}, GraphFacts((GraphTensor("p", "uint8", (-1, 8)),), ("y",)), r"shape \[-1, 8\]"),
        ({}, GraphFacts((GraphTensor("p", "uint8", (-1, -1, -1, 3)),), ("y",)), "no fixed"),
        ({}, GraphFacts((IMAGE_IN, GraphTensor("q", "uint8", ())), ("y",)), "which input"),
        ({}, GraphFacts((IMAGE_IN,), ("x", "y")), "which output"),
        (_declared(input_dtype="float16"), None, "dtype 'float16'"),
        (_declared(height=True), None, "height True"),
        (_declared(height=2.5), None, "height 2.5"),
        (_declared(width=0), None, "width 0 is not positive"),
        (_declared(width=[3]), None, r"width \[3\]"),
    ],
)
def test_what_a_client_could_not_feed_is_a_metadata_error(declared, graph, message):
    with pytest.raises(MetadataError, match=message):
        describe_interface(declared, graph)


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
# Values that pass, mixed with arbitrary JSON, so every check is reached.
VALID: dict[str, list[object]] = {
    "name": ["pixels"],
    "dtype": ["uint8", "float32"],
    "height": [224, 224.0, "224", float("nan"), float("inf"), -1],
    "width": [160, 160.0, "160", "١٢"],
    "preprocessing": ["none", "xception"],
    "layout": ["NHWC"],
}


DYNAMIC = GraphFacts((GraphTensor("pixels", "float32", (-1, -1, -1, 3)),), ("scores",))


@settings(max_examples=200, deadline=None)
@given(
    input_section=st.fixed_dictionaries(
        {}, optional={key: JSON | st.sampled_from(VALID[key]) for key in VALID}
    ),
    top=st.dictionaries(st.sampled_from(["classes", "output", "precision"]), JSON),
    graph=st.sampled_from([None, GRAPH, DYNAMIC]),
)
def test_any_json_declaration_is_read_or_refused_cleanly(input_section, top, graph):
    """A model server's model_info is network input: only MetadataError may come out."""
    declared = {**top, "input": input_section}
    try:
        interface = describe_interface(declared, graph)
    except MetadataError:
        return
    assert interface.height > 0
    assert interface.width > 0
    assert interface.input_dtype in ("uint8", "float32")
