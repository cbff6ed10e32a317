"""Learned rounding (AdaRound): round each int8 weight up or down, whichever the layer needs.

Rounding every weight to its nearest int8 value minimises each weight's own
error, not the error of what the layer computes: in a depthwise convolution
(nine weights a channel) the errors do not cancel, and a few borderline photos
change class. AdaRound (Nagel et al., "Up or Down? Adaptive Rounding for
Post-Training Quantization", ICML 2020) instead learns, for every weight, a soft
choice between the grid point below and the one above that keeps the layer's
output on calibration photos close to float32's, and anneals it to a hard
choice.

It works on the QDQ model ``quantize_static`` wrote, convolution by
convolution in graph order, and changes nothing but the int8 weight values: each
channel's scale (hence the grid), the activation ranges and the biases stay as
calibrated, so every weight moves by at most one step. A layer's input is
captured from the int8 model with the earlier layers' learned weights already in
place, so each layer makes up for the error that reaches it (activations
included); its target is the float32 layer's output on the float32 network's
input. Needs PyTorch (the ``train`` extra) for the gradient steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from clothing.precision.bias_correction import attribute, probe

STEPS = 300
PHOTOS = 64
BATCH = 8
PHOTOS_PER_RUN = 8
LEARNING_RATE = 1e-2
# The soft choice is a sigmoid stretched a little beyond [0, 1] and clipped, so it can
# reach exactly 0 or 1 (the paper's rectified sigmoid).
STRETCH = (-0.1, 1.1)
# The regulariser that pushes each choice to 0 or 1 starts after this share of the
# steps, its exponent falling from the first value to the second (sharper, later).
WARM_UP = 0.2
ANNEAL = (20.0, 2.0)
INT8_LIMIT = 127  # quantize_static's symmetric int8 grid is -127..127


@dataclass(frozen=True)
class _Layer:
    """One quantized convolution: where its input and int8 weights live in both graphs."""

    name: str
    float_input: str
    int8_input: str
    float_weight: np.ndarray  # [O, I/groups, kh, kw]
    int8_weight: Any  # the TensorProto holding the int8 values, replaced in place
    scale: np.ndarray  # per output channel
    node: Any


def _layers(float_model: Any, quantized: Any) -> list[_Layer]:
    """The convolutions whose weights ``quantize_static`` made int8 with one scale a channel."""
    import onnx
    from onnx import numpy_helper

    float_nodes = {node.name: node for node in float_model.graph.node if node.op_type == "Conv"}
    float_constants = {item.name: item for item in float_model.graph.initializer}
    int8_constants = {item.name: item for item in quantized.graph.initializer}
    producers = {output: node for node in quantized.graph.node for output in node.output}
    layers = []
    for node in quantized.graph.node:
        source = float_nodes.get(node.name)
        dequantizer = producers.get(node.input[1]) if node.op_type == "Conv" else None
        if source is None or dequantizer is None or dequantizer.op_type != "DequantizeLinear":
            continue
        values = int8_constants.get(dequantizer.input[0])
        scale = int8_constants.get(dequantizer.input[1])
        if values is None or scale is None or values.data_type != onnx.TensorProto.INT8:
            continue
        if (
            len(dequantizer.input) > 2
            and numpy_helper.to_array(int8_constants[dequantizer.input[2]]).any()
        ):
            continue  # an asymmetric grid: not what quantize_static writes for weights
        layers.append(
            _Layer(
                name=node.name,
                float_input=source.input[0],
                int8_input=node.input[0],
                float_weight=numpy_helper.to_array(float_constants[source.input[1]]),
                int8_weight=values,
                scale=np.broadcast_to(numpy_helper.to_array(scale), (values.dims[0],)),
                node=node,
            )
        )
    return layers


def _capture(model: Any, tensor: str, input_name: str, pixels: np.ndarray) -> np.ndarray:
    """The values ``tensor`` takes inside ``model`` for ``pixels``."""
    session = probe(model, [tensor])
    runs = [
        session.run([tensor], {input_name: pixels[start : start + PHOTOS_PER_RUN]})[0]
        for start in range(0, len(pixels), PHOTOS_PER_RUN)
    ]
    return np.concatenate(runs)


def _convolve(node: Any) -> Callable[[Any, Any], Any]:
    """``torch`` convolution with ``node``'s attributes; ONNX pads may differ per side."""
    import torch

    def ints(name: str, default: list[int]) -> list[int]:
        return next((list(a.ints) for a in node.attribute if a.name == name), default)

    auto_pad = next((a.s for a in node.attribute if a.name == "auto_pad"), b"NOTSET")
    if auto_pad not in (b"NOTSET", b"VALID"):
        raise ValueError(f"convolution {node.name} uses auto_pad {auto_pad.decode()}")
    top, left, bottom, right = ints("pads", [0, 0, 0, 0])
    strides, dilations = ints("strides", [1, 1]), ints("dilations", [1, 1])
    groups = attribute(node, "group", 1)

    def convolve(inputs: Any, weight: Any) -> Any:
        padded = torch.nn.functional.pad(inputs, (left, right, top, bottom))
        return torch.nn.functional.conv2d(
            padded, weight, stride=strides, dilation=dilations, groups=groups
        )

    return convolve


def _soft_choice(logits: Any) -> Any:
    import torch

    low, high = STRETCH
    return torch.clamp(torch.sigmoid(logits) * (high - low) + low, 0, 1)


def _initial_logits(fraction: np.ndarray) -> np.ndarray:
    """Logits whose soft choice equals ``fraction``: learning starts at the float weight."""
    low, high = STRETCH
    share = np.clip((fraction - low) / (high - low), 1e-6, 1 - 1e-6)
    return np.asarray(np.log(share / (1 - share)), np.float32)


def _learn_layer(
    layer: _Layer, inputs: np.ndarray, float_inputs: np.ndarray, steps: int, seed: int
) -> np.ndarray:
    """The layer's int8 weights, each rounded the way that keeps its output closest."""
    import torch

    convolve = _convolve(layer.node)
    scale = torch.tensor(layer.scale, dtype=torch.float32).view(-1, 1, 1, 1)
    steps_of_grid = torch.tensor(layer.float_weight) / scale
    below = torch.floor(steps_of_grid)
    logits = torch.from_numpy(_initial_logits((steps_of_grid - below).numpy()))
    logits.requires_grad_(True)
    int8_inputs = torch.from_numpy(inputs)
    with torch.no_grad():
        target = convolve(torch.from_numpy(float_inputs), torch.tensor(layer.float_weight))
    optimiser = torch.optim.Adam([logits], lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(seed)
    start, end = ANNEAL
    for step in range(steps):
        rows = torch.randint(0, len(int8_inputs), (BATCH,), generator=generator)
        choice = _soft_choice(logits)
        weight = torch.clamp(below + choice, -INT8_LIMIT, INT8_LIMIT) * scale
        loss = (convolve(int8_inputs[rows], weight) - target[rows]).pow(2).mean()
        if step >= steps * WARM_UP:
            sharpness = start - (start - end) * step / max(1, steps - 1)
            undecided = 1 - (2 * choice - 1).abs().pow(sharpness)
            loss = loss + undecided.mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        rounded = below + (_soft_choice(logits) >= 0.5).float()
    return np.asarray(torch.clamp(rounded, -INT8_LIMIT, INT8_LIMIT).numpy(), np.int8)


def spread(pixels: np.ndarray, count: int) -> np.ndarray:
    """``count`` rows spread evenly over ``pixels`` (sorted by class, so every class is in)."""
    picks = np.linspace(0, len(pixels) - 1, min(count, len(pixels))).round().astype(int)
    return np.asarray(pixels[picks])


def learn_rounding(
    float_model: Any,
    quantized: Any,
    input_name: str,
    pixels: np.ndarray,
    *,
    steps: int = STEPS,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Re-round the int8 convolution weights of ``quantized`` (changed in place).

    ``float_model`` is the float graph ``quantized`` was made from (same node
    names). Returns how many weights now round the other way than nearest.
    """
    from onnx import numpy_helper

    layers = _layers(float_model, quantized)
    changed = weights = 0
    for index, layer in enumerate(layers):
        inputs = _capture(quantized, layer.int8_input, input_name, pixels)
        float_inputs = _capture(float_model, layer.float_input, input_name, pixels)
        learned = _learn_layer(layer, inputs, float_inputs, steps, seed=index)
        nearest = numpy_helper.to_array(layer.int8_weight)
        if np.abs(learned.astype(np.int16) - nearest).max(initial=0) > 1:
            raise ValueError(f"learned rounding of {layer.name} moved a weight by more than a step")
        changed += int((learned != nearest).sum())
        weights += learned.size
        layer.int8_weight.CopyFrom(numpy_helper.from_array(learned, layer.int8_weight.name))
        if progress is not None:
            progress(f"rounding learned for {index + 1}/{len(layers)} convolutions ({layer.name})")
    if progress is not None and weights:
        progress(
            f"{changed:,} of {weights:,} convolution weights ({changed / weights:.1%})"
            " round the other way than to the nearest step"
        )
    return changed
