"""The Keras model or SavedModel being converted: what it takes, what it gives, its ONNX.

Imports TensorFlow, so only ``clothing convert`` loads this module, and never in
a process that has loaded ``clothing.proto`` (both register TensorFlow's proto
files under the same names).

Names: a Keras file keeps its input layer's and output layer's names (what
``tf.saved_model.save`` of a Keras 2 model signs them as: ``input_8``,
``dense_7``); a SavedModel keeps its ``serving_default`` signature's keys.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
SAVED_MODEL_FILE = "saved_model.pb"
SIGNATURE = "serving_default"


class SourceError(ValueError):
    """The file is not a model this command can convert."""


@dataclass(frozen=True)
class Source:
    """A loaded model with one image input and one output."""

    path: Path
    kind: str  # "keras-h5", "keras", "saved-model"
    input_name: str
    output_name: str
    input_shape: tuple[int | None, ...]
    input_dtype: str
    output_shape: tuple[int | None, ...]
    call: Callable[[Any], Any]  # a float32 batch -> the output tensor

    def predict(self, batch: np.ndarray, chunk: int) -> np.ndarray:
        parts = [np.asarray(self.call(batch[i : i + chunk])) for i in range(0, len(batch), chunk)]
        return np.concatenate(parts).astype(np.float32)


def sniff(path: Path) -> str:
    """The format by its bytes, before TensorFlow is imported: a clear refusal is fast."""
    if path.is_dir():
        if (path / SAVED_MODEL_FILE).is_file():
            return "saved-model"
        raise SourceError(f"{path} is a folder without {SAVED_MODEL_FILE}: not a SavedModel")
    if not path.is_file():
        raise SourceError(f"{path} does not exist")
    with path.open("rb") as file:
        head = file.read(len(HDF5_SIGNATURE))
    if head == HDF5_SIGNATURE:
        return "keras-h5"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "config.json" in archive.namelist():
                return "keras"
    raise SourceError(f"{path} is not a Keras model (.h5 or .keras) nor a SavedModel folder")


def load(path: Path) -> Source:
    kind = sniff(path)
    if kind == "saved-model":
        return _load_saved_model(path)
    return _load_keras(path, kind)


def _load_keras(path: Path, kind: str) -> Source:
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many kinds for a broken file.
        raise SourceError(f"{path} could not be loaded as a Keras model: {error}") from None
    inputs = list(model.inputs)
    outputs = list(model.outputs)
    _one(inputs, "inputs", [t.name for t in inputs])
    _one(outputs, "outputs", list(getattr(model, "output_names", [t.name for t in outputs])))
    input_layers = [
        layer.name for layer in model.layers if isinstance(layer, keras.layers.InputLayer)
    ]
    input_name = input_layers[0] if len(input_layers) == 1 else inputs[0].name
    output_names = list(getattr(model, "output_names", None) or [outputs[0].name])
    return Source(
        path=path,
        kind=kind,
        input_name=str(input_name),
        output_name=str(output_names[0]),
        input_shape=tuple(inputs[0].shape),
        input_dtype=str(inputs[0].dtype),
        output_shape=tuple(outputs[0].shape),
        call=lambda batch: model(batch, training=False),
    )


def _load_saved_model(path: Path) -> Source:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:  # TensorFlow raises many kinds for a broken folder.
        raise SourceError(f"{path} could not be loaded as a SavedModel: {error}") from None
    signatures = dict(loaded.signatures)
    if SIGNATURE not in signatures:
        raise SourceError(
            f"{path} has no {SIGNATURE!r} signature (has: {', '.join(signatures) or 'none'})"
        )
    function = signatures[SIGNATURE]
    _, inputs = function.structured_input_signature
    outputs = function.structured_outputs
    _one(list(inputs), "inputs", list(inputs))
    _one(list(outputs), "outputs", list(outputs))
    ((input_name, input_spec),) = inputs.items()
    ((output_name, output_spec),) = outputs.items()

    def call(batch: Any, _keep: Any = loaded) -> Any:
        # _keep holds the loaded object: its variables live as long as this function.
        return function(**{input_name: tf.convert_to_tensor(batch)})[output_name]

    return Source(
        path=path,
        kind="saved-model",
        input_name=str(input_name),
        output_name=str(output_name),
        input_shape=tuple(input_spec.shape.as_list()),
        input_dtype=input_spec.dtype.name,
        output_shape=tuple(output_spec.shape.as_list()),
        call=call,
    )


def _one(items: list[Any], what: str, names: list[Any]) -> None:
    if len(items) != 1:
        raise SourceError(
            f"the model has {len(items)} {what} ({', '.join(map(str, names))});"
            f" a served image classifier has one"
        )


def to_onnx(source: Source, height: int, width: int, opset: int) -> Any:
    """tf2onnx's graph of ``source`` for float32 ``[batch, height, width, 3]`` input."""
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, height, width, 3), tf.float32, name=source.input_name),)
    function = tf.function(source.call, input_signature=spec)
    model, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=opset)
    return model


def versions() -> dict[str, str]:
    import tensorflow as tf
    import tf2onnx

    return {"tensorflow": str(tf.__version__), "tf2onnx": str(tf2onnx.__version__)}
