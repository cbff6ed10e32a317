"""The ONNX graph edits and the serving layout, without TensorFlow (fast, always run)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from clothing.convert import graph
from clothing.preprocessing import PREPROCESSINGS, Preprocessing, scale_pixels
from clothing.serving_layout import LayoutError, write_version

ROOT = Path(__file__).resolve().parents[2]


def float_classifier(
    input_name: str = "Placeholder:0", output_name: str = "Identity:0"
) -> onnx.ModelProto:
    """float32 NHWC in, 4 logits out (mean colour times a seeded matrix), named like tf2onnx."""
    weights = np.random.default_rng(3).normal(size=(3, 4)).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMean", [input_name], ["pooled"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["pooled", "weights"], [output_name]),
    ]
    model_graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 8, 8, 3])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(weights, "weights")],
    )
    return helper.make_model(model_graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (output,) = session.run(None, feeds)
    return np.asarray(output)


def pixels() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)


def test_name_io_gives_the_model_its_own_names() -> None:
    model = float_classifier()
    before = run(model, {"Placeholder:0": scale_pixels(pixels(), "xception")})
    graph.name_io(model, "input_8", "dense_7")
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["input_8"]
    assert [o.name for o in model.graph.output] == ["dense_7"]
    np.testing.assert_array_equal(
        run(model, {"input_8": scale_pixels(pixels(), "xception")}), before
    )


def test_name_io_moves_an_inner_tensor_that_has_the_wanted_name() -> None:
    model = float_classifier()
    graph.name_io(model, "input_8", "pooled")
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["pooled"]
    assert run(model, {"input_8": scale_pixels(pixels(), "none")}).shape == (3, 4)


@pytest.mark.parametrize("preprocessing", PREPROCESSINGS)
def test_uint8_input_scales_as_the_gateway_does(preprocessing: Preprocessing) -> None:
    model = float_classifier("input_8", "dense_7")
    expected = run(model, {"input_8": scale_pixels(pixels(), preprocessing)})
    graph.wrap_uint8_input(model, preprocessing)
    onnx.checker.check_model(model)
    assert model.graph.input[0].name == "input_8"
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    np.testing.assert_allclose(run(model, {"input_8": pixels()}), expected, rtol=1e-6, atol=1e-6)


def test_uint8_input_needs_a_float_model() -> None:
    model = float_classifier("input_8", "dense_7")
    graph.wrap_uint8_input(model, "xception")
    with pytest.raises(graph.GraphError, match="needs a float32 input, not UINT8"):
        graph.wrap_uint8_input(model, "xception")


def test_softmax_turns_logits_into_probabilities_under_the_same_name() -> None:
    model = float_classifier("input_8", "dense_7")
    floats = scale_pixels(pixels(), "imagenet")
    logits = run(model, {"input_8": floats})
    assert not graph.ends_in_softmax(model)
    graph.add_softmax(model)
    onnx.checker.check_model(model)
    assert graph.ends_in_softmax(model)
    assert [o.name for o in model.graph.output] == ["dense_7"]
    probabilities = run(model, {"input_8": floats})
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probabilities, exp / exp.sum(axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(graph.GraphError, match="already ends in a Softmax"):
        graph.add_softmax(model)


def test_a_graph_with_two_inputs_is_refused() -> None:
    model = float_classifier("input_8", "dense_7")
    model.graph.input.append(
        helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", 8, 8, 3])
    )
    with pytest.raises(graph.GraphError, match="the graph has 2 inputs"):
        graph.single_input(model)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_version_is_all_or_nothing(tmp_path: Path) -> None:
    base = tmp_path / "model"
    target = write_version(base, 1, {"model.onnx": b"one", "metadata.json": b"{}"}, overwrite=False)
    assert sorted(p.name for p in target.iterdir()) == ["metadata.json", "model.onnx"]
    # Readable by others (umask permitting), as a container's server user needs.
    assert target.stat().st_mode & 0o755 == 0o755 & ~current_umask()
    with pytest.raises(LayoutError, match="already holds a model"):
        write_version(base, 1, {"model.onnx": b"two"}, overwrite=False)
    write_version(base, 1, {"model.onnx": b"two"}, overwrite=True)
    assert (target / "model.onnx").read_bytes() == b"two"
    assert not (target / "metadata.json").exists()
    assert [p.name for p in base.iterdir()] == ["1"]  # no staging folders left behind
    with pytest.raises(LayoutError, match="positive"):
        write_version(base, 0, {"model.onnx": b""}, overwrite=False)


def test_tensorflow_stays_out_of_the_serving_installs() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    heavy = ("tensorflow", "tf2onnx", "keras")
    for extra in ("server", "gateway"):
        assert not [r for r in extras[extra] if r.lower().startswith(heavy)], extra
    assert any(r.startswith("tensorflow-cpu==") for r in extras["convert"])
    assert any(r.startswith("tf2onnx==") for r in extras["convert"])


def test_the_command_line_loads_no_tensorflow_until_convert_runs() -> None:
    code = (
        "import sys\n"
        "from clothing.cli import build_parser\n"
        "build_parser().parse_args(['convert', 'm.h5', '--model-dir', 'x',"
        " '--classes', 'a', '--preprocessing', 'none'])\n"
        "loaded = [m for m in ('tensorflow', 'tf2onnx', 'keras', 'onnx') if m in sys.modules]\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_without_the_convert_extra_the_command_says_what_to_install(tmp_path: Path) -> None:
    model = tmp_path / "model.h5"
    model.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))  # looks like HDF5: gets past the sniffing
    code = (
        "import sys\n"
        "sys.modules['keras'] = sys.modules['tensorflow'] = None  # as if not installed\n"
        "from clothing.cli import main\n"
        f"sys.exit(main(['convert', {str(model)!r}, '--model-dir', {str(tmp_path / 'out')!r},"
        " '--classes', 'a,b', '--preprocessing', 'none']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "keras is not installed; clothing convert needs the convert extra" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
