"""Bias correction: cancel the average shift that int8 weights add to each layer's output.

Rounding a convolution's weights to int8 changes each output channel by
``sum((W_int8 - W) * x)``. Over many photos the random part averages out, but
the part ``sum((W_int8 - W) * E[x])`` does not: it is a constant offset per
channel, and in a network of depthwise convolutions (few weights per channel,
so rounding errors do not cancel) those offsets add up layer after layer and
move borderline photos to another class. Subtracting it from the layer's bias
(Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
Correction", 2019, with ``E[x]`` measured on the calibration photos) removes
that shift at no cost at run time: the bias is there anyway.

The correction needs the int8 weights, so the caller quantizes once, corrects
the float model's biases with :func:`correct_biases`, and quantizes again (the
weights, hence their rounding, are unchanged; only the biases differ).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The operators whose weights ``quantize_static`` rounds and whose bias absorbs the shift.
CORRECTED_OPS = ("Conv", "Gemm")
PHOTOS_PER_RUN = 8


def attribute(node: Any, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def dequantized_weights(quantized: Any) -> dict[str, np.ndarray]:
    """Each quantized Conv or Gemm's int8 weights back in float, by node name.

    In QDQ form a quantized layer's weight input comes from a DequantizeLinear
    over an int8 initializer; layers left in float (``nodes_to_exclude``) have
    none and are absent from the result.
    """
    from onnx import numpy_helper

    constants = {item.name: numpy_helper.to_array(item) for item in quantized.graph.initializer}
    dequantizers = {
        node.output[0]: node
        for node in quantized.graph.node
        if node.op_type == "DequantizeLinear" and constants.get(node.input[0]) is not None
    }
    weights = {}
    for node in quantized.graph.node:
        dequantizer = dequantizers.get(node.input[1]) if node.op_type in CORRECTED_OPS else None
        if dequantizer is None or constants[dequantizer.input[0]].dtype != np.int8:
            continue
        values = constants[dequantizer.input[0]].astype(np.float32)
        scale = constants[dequantizer.input[1]]
        zero = constants[dequantizer.input[2]] if len(dequantizer.input) > 2 else np.zeros(1)
        shape = [1] * values.ndim
        if scale.ndim:  # a scale per channel along the node's axis
            shape[attribute(dequantizer, "axis", 1)] = -1
        weights[node.name] = (values - zero.reshape(shape)) * scale.reshape(shape)
    return weights


def probe(model: Any, tensors: list[str]) -> Any:
    """An ONNX Runtime session of ``model`` whose outputs are its inner ``tensors``."""
    import onnx
    import onnxruntime

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.graph.output[:]
    for tensor in tensors:
        copy.graph.output.append(onnx.helper.make_empty_tensor_value_info(tensor))
    return onnxruntime.InferenceSession(
        copy.SerializeToString(), providers=["CPUExecutionProvider"]
    )


def input_means(model: Any, input_name: str, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The mean of each Conv or Gemm input per channel (over photos and positions), by node name."""

    layers: dict[str, list[str]] = {}  # input tensor -> the layers that read it
    for node in model.graph.node:
        if node.op_type in CORRECTED_OPS:
            layers.setdefault(node.input[0], []).append(node.name)
    session = probe(model, list(layers))
    names = list(layers)
    sums: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    for start in range(0, len(pixels), PHOTOS_PER_RUN):
        values = session.run(names, {input_name: pixels[start : start + PHOTOS_PER_RUN]})
        for tensor, value in zip(names, values, strict=True):
            # [N, C, H, W] for a convolution, [N, C] for Gemm: channels on axis 1.
            array = np.asarray(value)
            per_channel = np.moveaxis(array, 1, -1).reshape(-1, array.shape[1])
            sums[tensor] = sums.get(tensor, 0) + per_channel.sum(axis=0, dtype=np.float64)
            rows[tensor] = rows.get(tensor, 0) + per_channel.shape[0]
    return {
        layer: (sums[tensor] / rows[tensor]).astype(np.float32)
        for tensor in names
        for layer in layers[tensor]
    }


def output_shift(node: Any, weight: np.ndarray, error: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Per output channel, what ``error`` (int8 minus float weights) adds on inputs of ``mean``.

    Zero padding at the borders is ignored: inside the image every kernel tap
    sees an input of mean ``mean``.
    """
    if node.op_type == "Gemm":
        # y = x @ W.T (transB) or x @ W; the input's features index W's inputs.
        by_input = error if attribute(node, "transB", 0) else error.T
        return np.asarray(by_input @ mean)
    groups = attribute(node, "group", 1)
    outputs, inputs_per_group = weight.shape[:2]
    per_tap = error.reshape(outputs, inputs_per_group, -1).sum(axis=2)
    group_means = mean.reshape(groups, inputs_per_group)[np.arange(outputs) // (outputs // groups)]
    return np.asarray((per_tap * group_means).sum(axis=1))


def correct_biases(model: Any, quantized: Any, input_name: str, pixels: np.ndarray) -> int:
    """Subtract from each bias of ``model`` the shift its int8 weights in ``quantized`` add.

    ``model`` is the float graph ``quantized`` was made from (same node names);
    it is changed in place. Returns how many layers were corrected. A layer
    without a bias is left as it is (after batch-norm folding every convolution
    has one).
    """
    from onnx import numpy_helper

    rounded = dequantized_weights(quantized)
    means = input_means(model, input_name, pixels)
    constants = {item.name: item for item in model.graph.initializer}
    corrected = 0
    for node in model.graph.node:
        if node.name not in rounded or len(node.input) < 3 or node.input[2] not in constants:
            continue
        weight = numpy_helper.to_array(constants[node.input[1]])
        bias = constants[node.input[2]]
        shift = output_shift(node, weight, rounded[node.name] - weight, means[node.name])
        new_bias = (numpy_helper.to_array(bias) - shift).astype(np.float32)
        bias.CopyFrom(numpy_helper.from_array(new_bias, bias.name))
        corrected += 1
    return corrected
