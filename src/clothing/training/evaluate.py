"""Measure an ONNX clothing model on a labelled folder with ONNX Runtime (no torch).

Images go through the gateway's preprocessing (RGB, plain bilinear resize to the
model's input size, uint8), then the model's declared ``preprocessing``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clothing.preprocessing import scale_pixels
from clothing.serving_layout import LayoutError, ModelMetadata, find_model_file, read_metadata
from clothing.training.data import (
    DatasetError,
    LabelledImages,
    list_classes,
    list_images,
    load_batch,
)
from clothing.training.metrics import (
    ClassMetrics,
    accuracy,
    confusion_matrix,
    draw_confusion_matrix,
    format_report,
    per_class,
)


@dataclass(frozen=True)
class Evaluation:
    classes: list[str]
    matrix: np.ndarray
    accuracy: float
    per_class: list[ClassMetrics]
    images: int
    model: ModelMetadata
    predictions: np.ndarray  # the predicted class index of each image, in folder order
    probabilities: np.ndarray  # each image's row of the model's output, in folder order
    labels: np.ndarray  # each image's true class index in the model's order

    def to_json(self) -> dict[str, Any]:
        return {
            "top1_accuracy": self.accuracy,
            "images": self.images,
            "classes": self.classes,
            "per_class": [asdict(row) for row in self.per_class],
            "confusion_matrix": self.matrix.tolist(),
        }


def labelled_folder(data: Path) -> Path:
    """``data/validation`` when there is one, else ``data`` itself."""
    validation = data / "validation"
    return validation if validation.is_dir() else data


def evaluate(
    model_path: Path,
    data: Path,
    *,
    batch_size: int = 32,
    threads: int = 2,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> Evaluation:
    """Top-1 accuracy, per-class precision/recall and the confusion matrix on ``data``."""
    model = _open(model_path, threads, providers)
    folder_classes = list_classes(data)
    _check_classes(folder_classes, model.info)
    return _measure(model, list_images(data, folder_classes), batch_size)


def evaluate_images(
    model_path: Path,
    images: LabelledImages,
    *,
    batch_size: int = 32,
    threads: int = 2,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> Evaluation:
    """The same measures on a list of labelled photos (e.g. a held-out fold)."""
    model = _open(model_path, threads, providers)
    _check_classes(images.classes, model.info)
    return _measure(model, images, batch_size)


@dataclass(frozen=True)
class _Model:
    session: Any  # onnxruntime.InferenceSession, imported only when a model is measured
    info: ModelMetadata


def _open(model_path: Path, threads: int, providers: Sequence[str]) -> _Model:
    import onnxruntime

    model_file = find_model_file(model_path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model_file), options, providers=list(providers))
    info = read_metadata(model_file, lambda: session)
    if not info.classes:
        raise LayoutError(f"{model_file.parent} names no classes (metadata.json or classes.txt)")
    return _Model(session, info)


def _check_classes(classes: Sequence[str], info: ModelMetadata) -> None:
    unknown = sorted(set(classes) - set(info.classes))
    if unknown:
        raise DatasetError(f"classes the model does not know: {', '.join(unknown)}")


def _measure(model: _Model, images: LabelledImages, batch_size: int) -> Evaluation:
    info = model.info
    # The photos' labels -> the model's output order.
    labels = np.array([info.classes.index(images.classes[i]) for i in images.labels])
    outputs = np.empty((len(images), len(info.classes)), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        paths = list(images.paths[start : start + batch_size])
        batch = _model_input(load_batch(paths, info.height, info.width), info)
        (probabilities,) = model.session.run([info.output_name], {info.input_name: batch})
        outputs[start : start + len(paths)] = np.asarray(probabilities)
    predictions = outputs.argmax(axis=1)
    matrix = confusion_matrix(labels, predictions, len(info.classes))
    return Evaluation(
        classes=list(info.classes),
        matrix=matrix,
        accuracy=accuracy(matrix),
        per_class=per_class(matrix, list(info.classes)),
        images=len(images),
        model=info,
        predictions=predictions,
        probabilities=outputs,
        labels=labels,
    )


def _model_input(pixels: np.ndarray, info: ModelMetadata) -> np.ndarray:
    """uint8 pixels as the model's declared preprocessing wants them."""
    return pixels if info.preprocessing == "none" else scale_pixels(pixels, info.preprocessing)


def write_outputs(
    result: Evaluation, output: Path, extra: dict[str, Any] | None = None
) -> list[Path]:
    """metrics.json (``extra`` if given), report.txt and confusion_matrix.png in ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    metrics_file = output / "metrics.json"
    metrics = result.to_json() if extra is None else extra
    metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
    report_file = output / "report.txt"
    report_file.write_text(format_report(result.matrix, result.classes))
    image_file = output / "confusion_matrix.png"
    draw_confusion_matrix(result.matrix, result.classes, image_file)
    return [metrics_file, report_file, image_file]
