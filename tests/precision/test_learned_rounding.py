"""Learned rounding: the same grid as nearest rounding, closer answers to float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from clothing.precision.quantize import Calibration, to_int8

SIZE = 24
CHANNELS = 12


def _conv(
    name: str, source: str, target: str, weight: np.ndarray, groups: int = 1
) -> list[onnx.TensorProto | onnx.NodeProto]:
    """A convolution (3x3, zero-padded unless 1x1) followed by ReLU6, as in EfficientNet-Lite."""
    pad = weight.shape[-1] // 2
    return [
        numpy_helper.from_array(weight, f"{name}.weight"),
        numpy_helper.from_array(np.zeros(weight.shape[0], np.float32), f"{name}.bias"),
        helper.make_node(
            "Conv",
            [source, f"{name}.weight", f"{name}.bias"],
            [f"{name}.out"],
            name=name,
            pads=[pad] * 4,
            group=groups,
        ),
        helper.make_node("Clip", [f"{name}.out", "zero", "six"], [target]),
    ]


def _weights(rng: np.random.Generator, shape: tuple[int, ...], spread: float) -> np.ndarray:
    """Normal weights with one ten times larger per output channel.

    The outlier sets the channel's int8 scale, so the other weights get few grid
    steps and their rounding matters, as in trained depthwise convolutions.
    """
    weights = rng.normal(0, spread, shape).astype(np.float32)
    weights.reshape(shape[0], -1)[:, 0] *= 10
    return weights


def _small_convnet(path: Path) -> Path:
    """uint8 NHWC in, softmax out: stem conv, depthwise conv, pointwise conv, pooled, linear."""
    rng = np.random.default_rng(7)
    layers = [
        *_conv("stem", "scaled", "a", _weights(rng, (CHANNELS, 3, 3, 3), 0.2)),
        *_conv("depthwise", "a", "b", _weights(rng, (CHANNELS, 1, 3, 3), 0.2), groups=CHANNELS),
        *_conv("pointwise", "b", "c", _weights(rng, (CHANNELS, CHANNELS, 1, 1), 0.1)),
    ]
    constants = [
        numpy_helper.from_array(np.array(127.0, np.float32), "mid"),
        numpy_helper.from_array(np.array(128.0, np.float32), "spread"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(6.0, np.float32), "six"),
        numpy_helper.from_array(rng.normal(0, 1, (CHANNELS, 4)).astype(np.float32), "head.weight"),
        numpy_helper.from_array(np.zeros(4, np.float32), "head.bias"),
    ]
    initializers = constants + [item for item in layers if isinstance(item, onnx.TensorProto)]
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["pixels"], ["planar"], perm=[0, 3, 1, 2]),
        helper.make_node("Sub", ["planar", "mid"], ["centred"]),
        helper.make_node("Div", ["centred", "spread"], ["scaled"]),
        *[item for item in layers if isinstance(item, onnx.NodeProto)],
        helper.make_node("GlobalAveragePool", ["c"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"]),
        helper.make_node("Gemm", ["features", "head.weight", "head.bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "small_convnet",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 4])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _photos(count: int, seed: int) -> np.ndarray:
    """Smooth random photos: blurred noise, so neighbouring pixels agree as in real ones."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (count, SIZE // 4, SIZE // 4, 3)).astype(np.uint8)
    return np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)


def _int8_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {
        item.name: numpy_helper.to_array(item)
        for item in model.graph.initializer
        if item.data_type == TensorProto.INT8
    }


def _without_int8_weights(model: onnx.ModelProto) -> bytes:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    kept = [item for item in copy.graph.initializer if item.data_type != TensorProto.INT8]
    del copy.graph.initializer[:]
    copy.graph.initializer.extend(kept)
    return bytes(copy.SerializeToString())


def _logits(model: onnx.ModelProto, pixels: np.ndarray) -> np.ndarray:
    """The classifier's output before the softmax.

    The softmax's input is itself rounded to uint8 steps in the int8 copy, which
    hides the weights' share of the error in the probabilities of so small a model.
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.append(helper.make_empty_tensor_value_info("logits"))
    session = onnxruntime.InferenceSession(
        probe.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return np.asarray(session.run(None, {"image": pixels})[0])


# The source model, its calibration photos, its int8 copies by rounding and what
# learned rounding reported.
Copies = tuple[Path, Calibration, dict[str, onnx.ModelProto], list[str]]


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> Copies:
    source = _small_convnet(tmp_path_factory.mktemp("convnet") / "model.onnx")
    calibration = Calibration("image", _photos(32, seed=1))
    reports: list[str] = []
    made = {
        rounding: to_int8(
            source, calibration, rounding=rounding, rounding_steps=100, progress=reports.append
        )
        for rounding in ("nearest", "learned")
    }
    return source, calibration, made, reports


def test_learned_rounding_only_moves_weights_to_the_other_neighbouring_grid_point(
    copies: Copies,
) -> None:
    _, _, made, reports = copies
    nearest, learned = made["nearest"], made["learned"]
    # Everything but the int8 weight values is identical: scales, ranges, biases, graph.
    assert _without_int8_weights(learned) == _without_int8_weights(nearest)
    before, after = _int8_weights(nearest), _int8_weights(learned)
    assert before.keys() == after.keys()
    convolutions = [name for name in before if before[name].ndim == 4]
    assert len(convolutions) == 3
    moved = 0
    for name in convolutions:
        step = np.abs(after[name].astype(np.int16) - before[name])
        assert step.max() <= 1, name
        moved += int(step.sum())
    assert moved > 0  # some weights round the other way
    assert reports[-1].startswith(f"{moved:,} of {sum(before[n].size for n in convolutions):,}")
    head = next(name for name in before if before[name].ndim == 2)
    assert np.array_equal(before[head], after[head])  # only convolutions are learned


def test_learned_rounding_brings_answers_closer_to_float32_on_photos_it_never_saw(
    copies: Copies,
) -> None:
    source, _, made, _ = copies
    unseen = _photos(64, seed=2)
    expected = _logits(onnx.load(str(source)), unseen)
    error = {
        rounding: float(np.square(_logits(model, unseen) - expected).mean())
        for rounding, model in made.items()
    }
    assert error["learned"] < 0.8 * error["nearest"], error


def test_unknown_roundings_are_refused(copies: Copies) -> None:
    source, calibration, _, _ = copies
    with pytest.raises(ValueError, match="unknown rounding"):
        to_int8(source, calibration, rounding="stochastic")
