"""What the benchmark needs to know about a model repository's newest version."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PREPROCESSING_MODES = ("none", "xception", "imagenet")
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class ModelInfoError(ValueError):
    """The model repository is missing or malformed."""


@dataclass(frozen=True)
class ModelInfo:
    """The newest version of a model repository ``BASE/<version>/model.onnx``."""

    base_path: Path
    version: int
    onnx_path: Path
    height: int
    width: int
    classes: tuple[str, ...]
    input_name: str
    output_name: str
    preprocessing: str
    precision: str = "float32"  # metadata.json's "precision" (clothing fp16, clothing quantize)

    def to_model_input(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NHWC pixels -> what the model's input expects."""
        if self.preprocessing == "none":
            return pixels
        values = pixels.astype(np.float32)
        if self.preprocessing == "xception":
            return values / 127.5 - 1.0
        return ((values / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD).astype(np.float32)


def _newest_version(base_path: Path) -> Path:
    if not base_path.is_dir():
        raise ModelInfoError(f"model base path {base_path} is not a directory")
    versions = [
        child
        for child in base_path.iterdir()
        if child.is_dir() and child.name.isdigit() and (child / "model.onnx").is_file()
    ]
    if not versions:
        raise ModelInfoError(f"no <version>/model.onnx under {base_path}")
    return max(versions, key=lambda child: int(child.name))


def _read_metadata(version_dir: Path) -> dict[str, Any]:
    path = version_dir / "metadata.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelInfoError(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict):
        raise ModelInfoError(f"{path} is not a JSON object")
    return data


def _input_from_onnx(onnx_path: Path) -> tuple[str, int, int, str]:
    """Input name, height, width and output name from the graph itself."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    shape = model_input.shape
    if len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[2], int):
        raise ModelInfoError(f"{onnx_path}: input shape {shape} is not [batch, H, W, 3]")
    return model_input.name, shape[1], shape[2], session.get_outputs()[0].name


def load_model_info(base_path: str | Path) -> ModelInfo:
    """Read the newest version's metadata.json (or classes.txt and the graph)."""
    version_dir = _newest_version(Path(base_path))
    onnx_path = version_dir / "model.onnx"
    metadata = _read_metadata(version_dir)
    model_input = metadata.get("input") or {}
    try:
        if {"height", "width"} <= model_input.keys():
            input_name = str(model_input.get("name", "image"))
            height, width = int(model_input["height"]), int(model_input["width"])
            output_name = str((metadata.get("output") or {}).get("name", "probabilities"))
        else:
            input_name, height, width, output_name = _input_from_onnx(onnx_path)
    except (TypeError, ValueError) as error:
        raise ModelInfoError(f"{version_dir}/metadata.json: bad input section: {error}") from error
    classes: list[str] = [str(name) for name in metadata.get("classes", [])]
    classes_txt = version_dir / "classes.txt"
    if not classes and classes_txt.is_file():
        classes = [line.strip() for line in classes_txt.read_text().splitlines() if line.strip()]
    preprocessing = str(model_input.get("preprocessing", "none"))
    if preprocessing not in PREPROCESSING_MODES:
        raise ModelInfoError(f"unknown preprocessing {preprocessing!r} in {version_dir}")
    return ModelInfo(
        base_path=Path(base_path),
        version=int(version_dir.name),
        onnx_path=onnx_path,
        height=height,
        width=width,
        classes=tuple(classes),
        input_name=input_name,
        output_name=output_name,
        preprocessing=preprocessing,
        precision=str(metadata.get("precision", "float32")),
    )
