"""A static int8 copy of a float32 ONNX model, for CPUs.

ONNX Runtime's ``quantize_static`` in QDQ form: int8 weights with a scale per
output channel, uint8 activations with ranges calibrated on real photos. On a CPU
with VNNI (AVX-512 VNNI, AVX-VNNI) ONNX Runtime fuses each QuantizeLinear ->
DequantizeLinear -> Conv into an integer convolution, which runs several times
more multiply-adds per cycle than float32, and the weights take a quarter of the
space.

The graph's input stays uint8: the Cast to float and the ``(x - 127) / 128``
normalisation in front of the first convolution are not quantized (they are not
operators ``quantize_static`` handles), and the first QuantizeLinear lands after
them, where the calibrated range of ``(x - 127) / 128`` maps each pixel back onto
its own uint8 value. The output stays float32 probabilities: the softmax is not
quantized (see :func:`output_nodes`).
Whether accuracy holds is measured by the caller
(:mod:`clothing.precision.quantize_cli`), never assumed.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clothing.precision.learned_rounding import STEPS
from clothing.training.data import DatasetError, list_classes, list_images

# The calibration methods ``quantize_static`` offers, by the names the CLI takes.
METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
# How weights land on their int8 grid: ``learned`` chooses up or down per weight to keep
# each convolution's output (:mod:`clothing.precision.learned_rounding`); ``corrected``
# rounds to nearest, then each layer's bias absorbs the mean shift rounding adds
# (:mod:`clothing.precision.bias_correction`); ``nearest`` is quantize_static's own.
ROUNDINGS = ("learned", "corrected", "nearest")
# Photos per calibration pass. Entropy and percentile keep every activation of a
# pass in memory (about 45 MB per photo for EfficientNet-Lite0 at 224 px) before
# folding it into their histograms, so passes stay small.
PHOTOS_PER_PASS = 16
BATCH = 8


@dataclass(frozen=True)
class Calibration:
    """Photos the activation ranges are measured on, as the model takes them."""

    input_name: str
    pixels: np.ndarray  # [count, H, W, 3], a multiple of BATCH rows


def calibration_photos(
    folder: Path,
    *,
    input_name: str,
    height: int,
    width: int,
    preprocessing: str,
    count: int,
) -> Calibration:
    """``count`` photos spread evenly over ``folder``'s sorted list (so over every class).

    Each goes through the gateway's own preprocessing (``clothing.preprocessing``:
    reduced decode, EXIF orientation, RGB, bilinear resize, scaling), so the ranges
    are those of what the model sees when served. ``count`` (at most every photo in
    the folder) is rounded down to a whole number of passes, at least one.
    """
    from clothing.preprocessing import PREPROCESSINGS, photo_pixels, scale_pixels

    if preprocessing not in PREPROCESSINGS:
        raise ValueError(f"unknown preprocessing {preprocessing!r}")

    images = list_images(folder, list_classes(folder))
    if len(images) < PHOTOS_PER_PASS:
        raise DatasetError(
            f"{folder} has {len(images)} photos; calibration needs at least {PHOTOS_PER_PASS}"
        )
    usable = min(count, len(images))
    wanted = max(PHOTOS_PER_PASS, usable - usable % PHOTOS_PER_PASS)
    picks = np.linspace(0, len(images) - 1, wanted).round().astype(int)
    rows = []
    for index in picks:
        path = images.paths[int(index)]
        try:
            pixels = photo_pixels(path, width, height)
        except (OSError, ValueError) as error:
            raise DatasetError(f"{path}: not a readable photo ({error})") from None
        rows.append(pixels if preprocessing == "none" else scale_pixels(pixels, preprocessing))
    return Calibration(input_name, np.stack(rows))


class _Reader:
    """ONNX Runtime's CalibrationDataReader over ``Calibration``, in equal batches.

    ``set_range`` and ``__len__`` let ``quantize_static`` calibrate pass by pass
    (its ``CalibStridedMinMax`` option, which works for every method), so memory
    holds one pass of activations, not all of them. Batches are all the same
    size: the histogram methods stack them.
    """

    def __init__(self, calibration: Calibration) -> None:
        self._calibration = calibration
        self._batches = len(calibration.pixels) // BATCH
        self._range = range(self._batches)
        self._next: Iterator[int] = iter(self._range)

    def __len__(self) -> int:
        return self._batches

    def set_range(self, start_index: int, end_index: int) -> None:
        self._range = range(start_index, min(end_index, self._batches))
        self._next = iter(self._range)

    def get_next(self) -> dict[str, np.ndarray] | None:
        index = next(self._next, None)
        if index is None:
            return None
        rows = self._calibration.pixels[index * BATCH : (index + 1) * BATCH]
        return {self._calibration.input_name: rows}

    def __iter__(self) -> _Reader:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = self.get_next()
        if batch is None:
            raise StopIteration
        return batch


def to_int8(
    model_file: Path,
    calibration: Calibration,
    *,
    method: str = "minmax",
    rounding: str = "learned",
    rounding_steps: int = STEPS,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """The model at ``model_file`` quantized to int8 (QDQ, per-channel weights), checked.

    ``rounding`` says how weights land on their int8 grid (see ``ROUNDINGS``).
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from clothing.precision.bias_correction import correct_biases
    from clothing.precision.learned_rounding import PHOTOS, learn_rounding, spread

    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}; choose from {', '.join(ROUNDINGS)}")
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch:
        # Shape inference and graph clean-up first (constant folding, Pads folded into
        # the convolutions), as ONNX Runtime's quantization guide asks.
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(model_file), str(prepared))
        onnx.save(_named(onnx.load(str(prepared))), str(prepared))
        quantized = Path(scratch) / "int8.onnx"
        quantize_file(prepared, quantized, calibration, method)
        model = onnx.load(str(quantized))
        if rounding == "corrected":
            float_model = onnx.load(str(prepared))
            correct_biases(float_model, model, calibration.input_name, calibration.pixels)
            onnx.save(float_model, str(prepared))
            quantize_file(prepared, quantized, calibration, method)
            model = onnx.load(str(quantized))
        elif rounding == "learned":
            photos = spread(calibration.pixels, PHOTOS)
            float_model = onnx.load(str(prepared))
            learn_rounding(
                float_model,
                model,
                calibration.input_name,
                photos,
                steps=rounding_steps,
                progress=progress,
            )
    onnx.checker.check_model(model)
    _check_signature(onnx.load(str(model_file)), model)
    return model


def quantize_file(
    source: Path,
    target: Path,
    calibration: Calibration,
    method: str,
    *,
    keep_float: Sequence[str] | None = None,
) -> None:
    """One ``quantize_static`` pass from ``source`` to ``target``: QDQ, per-channel int8
    weights, uint8 activations calibrated on ``calibration`` with ``method``. The
    nodes named in ``keep_float`` stay float32: by default those that produce the
    graph's outputs (:func:`output_nodes`)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # ONNX Runtime's CalibrationDataReader is an ABC that accepts any class with get_next.
    quantize_static(
        str(source),
        str(target),
        _Reader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=getattr(CalibrationMethod, METHODS[method]),
        nodes_to_exclude=list(
            output_nodes(onnx.load(str(source))) if keep_float is None else keep_float
        ),
        extra_options={"CalibStridedMinMax": PHOTOS_PER_PASS // BATCH},
    )


def output_nodes(model: Any) -> list[str]:
    """The nodes that produce the graph's outputs: they stay float32.

    What users read is the probabilities: rounded to uint8 steps of 1/255 they
    no longer add up to 1, small ones read 0, and two classes can tie at the
    top. Computed in float32 from the int8 network's dequantized logits, they
    are a true softmax, and the top class is the same.
    """
    outputs = {value.name for value in model.graph.output}
    return [node.name for node in model.graph.node if outputs.intersection(node.output)]


def _named(model: Any) -> Any:
    """``model`` with a name on every node (``quantize_static`` excludes nodes by name)."""
    taken = {node.name for node in model.graph.node}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = next(
                name for n in itertools.count(index) if (name := f"{node.op_type}_{n}") not in taken
            )
            taken.add(node.name)
    return model


def _signature(model: Any) -> list[tuple[str, str, int]]:
    return [
        (kind, value.name, value.type.tensor_type.elem_type)
        for kind, values in (
            ("input", model.graph.input),
            ("output", model.graph.output),
        )
        for value in values
    ]


def _check_signature(source: Any, copy: Any) -> None:
    """Refuse a copy whose inputs or outputs differ in name or type from the source's."""
    if _signature(source) != _signature(copy):
        raise ValueError(
            f"the int8 copy changed the signature: {_signature(source)} -> {_signature(copy)}"
        )
