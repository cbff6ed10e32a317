"""Bias correction: with the int8 weights, each layer's average output is the float one's again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from clothing.precision.bias_correction import correct_biases, dequantized_weights
from clothing.precision.quantize import Calibration, quantize_file

CHANNELS, GROUPS, CLASSES = 8, 2, 3
LAYER_OUTPUTS = ("mixed", "scores")


def _two_layer_model(rng: np.random.Generator) -> onnx.ModelProto:
    """A grouped 1x1 convolution, a global average and a Gemm, with weights that round badly.

    1x1 kernels and no padding make the average output exactly ``W @ E[x] + b``,
    so the correction can be checked to float precision.
    """
    conv_weight = rng.normal(0, 1, (CHANNELS, CHANNELS // GROUPS, 1, 1)).astype(np.float32)
    conv_weight[:, 0] *= 40  # one large weight per channel: a coarse int8 step for the rest
    gemm_weight = rng.normal(0, 1, (CLASSES, CHANNELS)).astype(np.float32)
    gemm_weight[:, 0] *= 40
    constants = [
        numpy_helper.from_array(conv_weight, "conv_weight"),
        numpy_helper.from_array(rng.normal(0, 1, CHANNELS).astype(np.float32), "conv_bias"),
        numpy_helper.from_array(gemm_weight, "gemm_weight"),
        numpy_helper.from_array(rng.normal(0, 1, CLASSES).astype(np.float32), "gemm_bias"),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["x", "conv_weight", "conv_bias"], ["mixed"], name="conv", group=GROUPS
        ),
        helper.make_node("GlobalAveragePool", ["mixed"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node(
            "Gemm", ["flat", "gemm_weight", "gemm_bias"], ["scores"], name="gemm", transB=1
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "two-layers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, CHANNELS, 5, 5])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, CLASSES])],
        constants,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _with_weights(model: onnx.ModelProto, weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """``model`` with each layer's weights replaced by ``weights[layer]``."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    weight_of = {node.input[1]: node.name for node in copy.graph.node if node.name in weights}
    for item in copy.graph.initializer:
        if item.name in weight_of:
            item.CopyFrom(numpy_helper.from_array(weights[weight_of[item.name]], item.name))
    return copy


def _mean_outputs(model: onnx.ModelProto, pixels: np.ndarray) -> list[np.ndarray]:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    for name in LAYER_OUTPUTS:
        probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    session = onnxruntime.InferenceSession(
        probe.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    outputs = session.run(list(LAYER_OUTPUTS), {"x": pixels})
    return [np.moveaxis(value, 1, -1).reshape(-1, value.shape[1]).mean(axis=0) for value in outputs]


def test_the_corrected_biases_give_the_rounded_layers_the_float_average_outputs(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(7)
    model = _two_layer_model(rng)
    # Inputs with a non-zero mean per channel, the case where rounding shifts the output.
    pixels = (
        rng.normal(0, 1, (32, CHANNELS, 5, 5)) + rng.normal(2, 1, (1, CHANNELS, 1, 1))
    ).astype(np.float32)
    source, quantized = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    onnx.save(model, str(source))
    # Both layers quantized (by default the Gemm, which makes the output, stays float32).
    quantize_file(source, quantized, Calibration("x", pixels), "minmax", keep_float=())
    rounded = dequantized_weights(onnx.load(str(quantized)))
    assert set(rounded) == {"conv", "gemm"}
    assert not np.allclose(rounded["conv"], numpy_helper.to_array(model.graph.initializer[0]))

    float_means = _mean_outputs(model, pixels)
    uncorrected = _mean_outputs(_with_weights(model, rounded), pixels)
    assert correct_biases(model, onnx.load(str(quantized)), "x", pixels) == 2
    corrected = _mean_outputs(_with_weights(model, rounded), pixels)

    for before, after, wanted in zip(uncorrected, corrected, float_means, strict=True):
        assert np.abs(before - wanted).max() > 1e-2  # rounding did shift the layer
        np.testing.assert_allclose(after, wanted, atol=1e-4)


def test_layers_kept_in_float_are_not_corrected(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    model = _two_layer_model(rng)
    pixels = rng.normal(1, 1, (16, CHANNELS, 5, 5)).astype(np.float32)
    quantized = onnx.load_from_string(model.SerializeToString())  # no int8 weights at all
    biases = [numpy_helper.to_array(item).copy() for item in model.graph.initializer]
    assert correct_biases(model, quantized, "x", pixels) == 0
    for before, item in zip(biases, model.graph.initializer, strict=True):
        np.testing.assert_array_equal(before, numpy_helper.to_array(item))
