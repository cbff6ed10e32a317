"""Keras ``.h5``/``.keras`` or SavedModel -> ONNX in the serving layout, checked against Keras.

Steps: refuse what is not one image classifier (before the slow work), convert
with tf2onnx, give the graph the model's own input and output names, optionally
add a Softmax and a uint8 input that does the preprocessing, compare ONNX
Runtime with Keras on photos, and only then write the version folder (all at
once). Anything that fails writes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from clothing import __version__
from clothing.preprocessing import Preprocessing, open_reduced, resized_pixels, scale_pixels
from clothing.serving_layout import (
    declare,
    version_files,
    version_to_write,
    write_version,
)

OPSET = 17
PARITY_TOLERANCE = 1e-4
CHECK_IMAGES = 16
# Images per call in the check: a 299x299 Xception's activations for a few images
# already take hundreds of MB.
CHUNK = 4
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
ServingInput = Literal["float32", "uint8"]


class ConvertError(ValueError):
    """The model cannot be converted as asked; the message says why."""

    exit_code = 2


class ParityError(ConvertError):
    """ONNX Runtime's answers differ from Keras's."""

    exit_code = 1


@dataclass(frozen=True)
class Options:
    source: Path
    model_dir: Path
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    version: int | None = None
    serving_input: ServingInput = "float32"
    softmax: bool = False
    image_size: tuple[int, int] | None = None
    check_data: Path | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class Result:
    directory: Path
    parity: float
    checked_on: str
    metadata: dict[str, Any]


def convert(options: Options) -> Result:
    from clothing.convert import graph, source

    source.sniff(options.source)  # a file that is not a model is refused before TF loads
    version = version_to_write(options.model_dir, options.version, overwrite=options.overwrite)
    photos, checked_on = check_photos(options.check_data)
    model = source.load(options.source)
    height, width = image_size(model, options.image_size)
    n_classes = class_count(model.output_shape)
    if n_classes is not None and n_classes != len(options.classes):
        raise ConvertError(
            f"the model gives {n_classes} scores but {len(options.classes)} class names were given"
        )
    proto = source.to_onnx(model, height, width, OPSET)
    graph.name_io(proto, model.input_name, model.output_name)
    ends_in_softmax = graph.ends_in_softmax(proto)
    if options.softmax:
        graph.add_softmax(proto)
    if options.serving_input == "uint8":
        graph.wrap_uint8_input(proto, options.preprocessing)
    model_bytes = graph.canonical_bytes(proto, "clothing-classifier", __version__)

    pixels = np.stack([_row(photo, height, width) for photo in photos])
    floats = scale_pixels(pixels, options.preprocessing)
    expected = model.predict(floats, CHUNK)
    if options.softmax:
        expected = _softmax(expected)
    fed = pixels if options.serving_input == "uint8" else floats
    parity = _parity(model_bytes, model.input_name, model.output_name, fed, expected)
    if parity > PARITY_TOLERANCE:
        raise ParityError(
            f"ONNX Runtime differs from Keras by {parity:.2e} (> {PARITY_TOLERANCE});"
            " nothing written"
        )
    info = metadata(
        options,
        model,
        (height, width),
        {
            "ends_in_softmax": ends_in_softmax or options.softmax,
            "max_abs_diff": parity,
            "checked_on": checked_on,
            **source.versions(),
        },
    )
    files = version_files(model_bytes, options.classes, info)
    directory = write_version(options.model_dir, version, files, overwrite=options.overwrite)
    return Result(directory, parity, checked_on, info)


def metadata(
    options: Options, model: Any, size: tuple[int, int], conversion: dict[str, Any]
) -> dict[str, Any]:
    """``metadata.json``: what the gateway reads (input, output, classes) and the provenance."""
    inside = options.serving_input == "uint8"
    return {
        "name": options.model_dir.name,
        **declare(
            classes=options.classes,
            input_name=model.input_name,
            input_dtype=options.serving_input,
            height=size[0],
            width=size[1],
            # What a client must do to the pixels: nothing once it is inside the graph.
            preprocessing="none" if inside else options.preprocessing,
            output_name=model.output_name,
        ),
        "conversion": {
            "source": options.source.name,
            "source_format": model.kind,
            "source_sha256": _sha256(options.source),
            "preprocessing": options.preprocessing,
            "preprocessing_in_graph": inside,
            "softmax_added": options.softmax,
            "opset": OPSET,
            "converter": f"clothing-classifier {__version__}",
            **conversion,
        },
    }


def image_size(model: Any, requested: tuple[int, int] | None) -> tuple[int, int]:
    """Height and width from a ``[batch, height, width, 3]`` float32 input."""
    shape = tuple(model.input_shape)
    dims = ", ".join("None" if d is None else str(d) for d in shape)
    if len(shape) != 4 or shape[3] != 3:
        raise ConvertError(
            f"input {model.input_name!r} has shape [{dims}]; an image model takes"
            " [batch, height, width, 3] (NHWC, RGB)"
        )
    if model.input_dtype != "float32":
        raise ConvertError(f"input {model.input_name!r} is {model.input_dtype}, not float32")
    height, width = shape[1], shape[2]
    if requested is not None:
        if (height, width) != requested and (height is not None or width is not None):
            raise ConvertError(
                f"--image-size {requested[0]}x{requested[1]} but the model's input is [{dims}]"
            )
        return requested
    if height is None or width is None:
        raise ConvertError(
            f"input {model.input_name!r} has no fixed size [{dims}]; pass --image-size HxW"
        )
    return int(height), int(width)


def class_count(shape: Sequence[int | None]) -> int | None:
    if len(shape) != 2:
        dims = ", ".join("None" if d is None else str(d) for d in shape)
        raise ConvertError(f"the output has shape [{dims}]; a classifier gives [batch, classes]")
    return None if shape[1] is None else int(shape[1])


def check_photos(folder: Path | None) -> tuple[list[Any], str]:
    """Up to ``CHECK_IMAGES`` decoded photos from ``folder``, or random pixels without one."""
    from PIL import Image

    if folder is None:
        rng = np.random.default_rng(0)
        noise = rng.integers(0, 256, size=(4, 64, 64, 3), dtype=np.uint8)
        return [Image.fromarray(image) for image in noise], "4 images of random pixels"
    if not folder.is_dir():
        raise ConvertError(f"--check-data {folder} is not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ConvertError(f"--check-data {folder} holds no .jpg, .png or .webp images")
    step = max(1, len(paths) // CHECK_IMAGES)
    chosen = paths[::step][:CHECK_IMAGES]
    # Reduced no further than 1024 px: the model's side is not known yet.
    photos = [open_reduced(path, 1024) for path in chosen]
    return photos, f"{len(photos)} photos from {folder.name}"


def _row(photo: Any, height: int, width: int) -> np.ndarray:
    # The gateway's own decode and resize: the check sees what serving will see.
    return resized_pixels(photo, width, height)


def _parity(
    model_bytes: bytes, input_name: str, output_name: str, batch: np.ndarray, expected: np.ndarray
) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    actual = np.concatenate(
        [
            np.asarray(session.run([output_name], {input_name: batch[i : i + CHUNK]})[0])
            for i in range(0, len(batch), CHUNK)
        ]
    )
    return float(np.max(np.abs(actual.astype(np.float32) - expected)))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None  # a SavedModel folder
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
