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

from clothing.training.data import DatasetError, list_classes, list_images, load_batch
from clothing.training.metrics import (
    ClassMetrics,
    accuracy,
    confusion_matrix,
    draw_confusion_matrix,
    format_report,
    per_class,
)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class ModelError(ValueError):
    """The model path does not hold a usable clothing model."""


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    classes: list[str]
    height: int
    width: int
    preprocessing: str
    input_name: str
    output_name: str


@dataclass(frozen=True)
class Evaluation:
    classes: list[str]
    matrix: np.ndarray
    accuracy: float
    per_class: list[ClassMetrics]
    images: int
    model: ModelInfo
    predictions: np.ndarray  # the predicted class index of each image, in folder order

    def to_json(self) -> dict[str, Any]:
        return {
            "top1_accuracy": self.accuracy,
            "images": self.images,
            "classes": self.classes,
            "per_class": [asdict(row) for row in self.per_class],
            "confusion_matrix": self.matrix.tolist(),
        }


def resolve_model_file(path: Path) -> Path:
    """A ``.onnx`` file, a version folder, or a base path (its highest version)."""
    if path.is_file():
        return path
    if (path / "model.onnx").is_file():
        return path / "model.onnx"
    versions = [p for p in path.glob("*") if p.name.isdigit() and (p / "model.onnx").is_file()]
    if not versions:
        raise ModelError(f"no model.onnx at {path} or in its version folders")
    return max(versions, key=lambda p: int(p.name)) / "model.onnx"


def read_model_info(model_file: Path, session: Any) -> ModelInfo:
    """Classes, input size and preprocessing from metadata.json, else classes.txt + graph."""
    folder = model_file.parent
    inputs, outputs = session.get_inputs(), session.get_outputs()
    metadata_file, classes_file = folder / "metadata.json", folder / "classes.txt"
    if metadata_file.is_file():
        info = json.loads(metadata_file.read_text())
        declared = info.get("input", {})
        return ModelInfo(
            path=model_file,
            classes=list(info["classes"]),
            height=int(declared["height"]),
            width=int(declared["width"]),
            preprocessing=str(declared.get("preprocessing", "none")),
            input_name=str(declared.get("name", inputs[0].name)),
            output_name=str(info.get("output", {}).get("name", outputs[0].name)),
        )
    if not classes_file.is_file():
        raise ModelError(f"{folder} has neither metadata.json nor classes.txt")
    _, height, width, _ = inputs[0].shape
    if not isinstance(height, int) or not isinstance(width, int):
        raise ModelError("the model input has no fixed height and width; add metadata.json")
    return ModelInfo(
        path=model_file,
        classes=[line.strip() for line in classes_file.read_text().splitlines() if line.strip()],
        height=height,
        width=width,
        preprocessing="none",
        input_name=inputs[0].name,
        output_name=outputs[0].name,
    )


def prepare(pixels: np.ndarray, preprocessing: str) -> np.ndarray:
    if preprocessing == "none":
        return pixels
    if preprocessing == "xception":
        return pixels.astype(np.float32) / 127.5 - 1.0
    if preprocessing == "imagenet":
        return (pixels.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    raise ModelError(f"unknown preprocessing {preprocessing!r}")


def evaluate(
    model_path: Path,
    data: Path,
    *,
    batch_size: int = 32,
    threads: int = 2,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> Evaluation:
    """Top-1 accuracy, per-class precision/recall and the confusion matrix on ``data``."""
    import onnxruntime

    model_file = resolve_model_file(model_path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model_file), options, providers=list(providers))
    info = read_model_info(model_file, session)
    folder_classes = list_classes(data)
    unknown = sorted(set(folder_classes) - set(info.classes))
    if unknown:
        raise DatasetError(f"classes the model does not know: {', '.join(unknown)}")
    images = list_images(data, folder_classes)
    # Folder labels -> the model's output order.
    labels = np.array([info.classes.index(folder_classes[i]) for i in images.labels])
    predictions = np.empty(len(images), dtype=np.int64)
    for start in range(0, len(images), batch_size):
        paths = list(images.paths[start : start + batch_size])
        batch = prepare(load_batch(paths, info.height, info.width), info.preprocessing)
        (probabilities,) = session.run([info.output_name], {info.input_name: batch})
        predictions[start : start + len(paths)] = np.asarray(probabilities).argmax(axis=1)
    matrix = confusion_matrix(labels, predictions, len(info.classes))
    return Evaluation(
        classes=info.classes,
        matrix=matrix,
        accuracy=accuracy(matrix),
        per_class=per_class(matrix, info.classes),
        images=len(images),
        model=info,
        predictions=predictions,
    )


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
