"""The folder layout the model server reads: ``<model_dir>/<version>/model.onnx`` and friends.

``metadata.json`` says what the gateway needs to feed the model (input name,
dtype, size, preprocessing; output name; class names); ``classes.txt`` holds
the class names for tools that read only it. Everything that writes a version
(export, convert, the reduced-precision copies) or reads one back (the model
server, evaluation, the benchmark) goes through this module: writing a version
all at once, finding the newest one, and ``metadata.json``'s schema
(:class:`ModelMetadata`, :func:`declare`). Light on purpose: every extra may
import it; the preprocessing names and scaling are the gateway's
(:mod:`clothing.gateway.imaging`), imported only when a version is read.
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from clothing.gateway.imaging import Preprocessing

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
CLASSES_FILE = "classes.txt"

# One model repository per precision. Every copy is served under the same model
# name (``clothing-model``) with the same version number as the float32 original
# it was made from, so the gateway, the benchmark and TF Serving clients address
# them alike; which copy a model server loads is only its ``--model_base_path``.
# CPUs serve the int8 copy, GPUs the float32 original or its float16 copy.
PRECISION_BASE_PATHS = {
    "float32": "models/clothing-model",
    "int8": "models/clothing-model-int8",  # clothing quantize
    "float16": "models/clothing-model-fp16",  # clothing fp16 (not bundled)
}
CPU_PRECISION = "int8"


class LayoutError(ValueError):
    """The folder does not hold a usable model version, or the version cannot be written."""


def next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def version_to_write(model_dir: Path, version: int | None, *, overwrite: bool) -> int:
    """``version``, or the next free one when it is ``None``; refused as :func:`check_writable`."""
    chosen = next_version(model_dir) if version is None else version
    check_writable(model_dir, chosen, overwrite=overwrite)
    return chosen


def check_writable(model_dir: Path, version: int, *, overwrite: bool) -> Path:
    """The version folder to write; refuses a non-positive version or an occupied one."""
    if version < 1:
        raise LayoutError("the version must be a positive integer")
    target = model_dir / str(version)
    if (target / MODEL_FILE).exists() and not overwrite:
        raise LayoutError(f"{target} already holds a model; pick another --version")
    return target


def version_files(
    model: bytes, classes: Sequence[str], metadata: Mapping[str, Any]
) -> dict[str, bytes]:
    """A version folder's files as :func:`write_version` takes them."""
    return {
        MODEL_FILE: model,
        CLASSES_FILE: classes_bytes(classes),
        METADATA_FILE: metadata_bytes(metadata),
    }


def classes_bytes(classes: Sequence[str]) -> bytes:
    """``classes.txt``: one name a line, in output order."""
    return "".join(f"{name}\n" for name in classes).encode()


def metadata_bytes(metadata: Mapping[str, Any]) -> bytes:
    """``metadata.json`` as every writer formats it."""
    return (json.dumps(metadata, indent=2) + "\n").encode()


def write_version(
    model_dir: Path, version: int, files: Mapping[str, bytes], *, overwrite: bool
) -> Path:
    """Write ``files`` into ``model_dir/version`` all at once.

    They are written to a hidden folder first and renamed into place, so a model
    server polling ``model_dir`` never sees a version without its metadata.
    """
    target = check_writable(model_dir, version, overwrite=overwrite)
    model_dir.mkdir(parents=True, exist_ok=True)
    # A plain mkdir (not mkdtemp's 0700): the version folder keeps the umask's
    # permissions, so a server running as another user (a container's) can read it.
    staging = _hidden_folder(model_dir, f".{version}-writing-")
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        replaced = None
        if target.exists():
            replaced = _hidden_folder(model_dir, f".{version}-replaced-")
            target.rename(replaced / "old")
        staging.rename(target)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        raise
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
    return target


def _hidden_folder(parent: Path, prefix: str) -> Path:
    """A new, uniquely named folder; model servers skip names that are not integers."""
    while True:
        folder = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder


def versions_on_disk(base_path: Path) -> dict[int, Path]:
    """The integer-named folders of ``base_path`` that hold a model file."""
    found: dict[int, Path] = {}
    if not base_path.is_dir():
        return found
    for child in base_path.iterdir():
        if child.name.isdigit() and (child / MODEL_FILE).is_file():
            found[int(child.name)] = child
    return found


def newest_version(base_path: Path) -> Path:
    """The highest version folder of ``base_path`` that holds a model file."""
    if not base_path.is_dir():
        raise LayoutError(f"no {MODEL_FILE} at {base_path}: it is not a directory")
    versions = versions_on_disk(base_path)
    if not versions:
        raise LayoutError(f"no <version>/{MODEL_FILE} under {base_path}")
    return versions[max(versions)]


def find_model_file(path: Path) -> Path:
    """A model file itself, a version folder's, or a base path's newest version's."""
    if path.is_file():
        return path
    if (path / MODEL_FILE).is_file():
        return path / MODEL_FILE
    return newest_version(path) / MODEL_FILE


def declare(
    *,
    classes: Sequence[str],
    input_name: str,
    input_dtype: str,
    height: int,
    width: int,
    preprocessing: Preprocessing,
    output_name: str,
) -> dict[str, Any]:
    """The serving fields of ``metadata.json`` (what :func:`read_metadata` reads back)."""
    return {
        "classes": list(classes),
        "input": {
            "name": input_name,
            "dtype": input_dtype,
            "layout": "NHWC",
            "height": height,
            "width": width,
            "preprocessing": preprocessing,
        },
        "output": {"name": output_name},
    }


def read_declared(version_dir: Path) -> dict[str, Any]:
    """``metadata.json`` as written, with ``classes.txt``'s names when it lists none.

    ``{}`` when neither file is there. The model server hands this to clients as is.
    """
    path = version_dir / METADATA_FILE
    declared: dict[str, Any] = {}
    if path.is_file():
        try:
            declared = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise LayoutError(f"cannot read {path}: {error}") from error
        if not isinstance(declared, dict):
            raise LayoutError(f"{path} must hold a JSON object")
    classes_file = version_dir / CLASSES_FILE
    if "classes" not in declared and classes_file.is_file():
        lines = classes_file.read_text().splitlines()
        declared["classes"] = [line.strip() for line in lines if line.strip()]
    return declared


@dataclass(frozen=True)
class ModelMetadata:
    """The schema of ``metadata.json``: what a client feeds one model version and gets back.

    The file may hold more (training settings, metrics); these are the fields read back.
    """

    model_file: Path
    classes: tuple[str, ...]
    input_name: str
    height: int
    width: int
    output_name: str
    preprocessing: Preprocessing = "none"
    input_dtype: str = "uint8"
    input_layout: str = "NHWC"
    precision: str = "float32"  # "float16" or "int8" for clothing fp16 / clothing quantize

    @property
    def version(self) -> int | None:
        """The version folder's number; ``None`` for a model file outside the layout."""
        name = self.model_file.parent.name
        return int(name) if name.isdigit() else None

    def to_model_input(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NHWC pixels -> what the model's input expects (the gateway's scaling)."""
        if self.preprocessing == "none":
            return pixels
        from clothing.gateway.imaging import scale_pixels

        return scale_pixels(pixels, self.preprocessing)


# ONNX Runtime's type names for the input dtypes metadata.json may declare.
_GRAPH_DTYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32"}


def read_metadata(path: str | Path, graph: Callable[[], Any] | None = None) -> ModelMetadata:
    """Describe the model at ``path`` (see :func:`find_model_file`) from its metadata.json.

    ``classes.txt`` supplies the classes when metadata.json lists none. What the file
    leaves out (an old export, a model with only classes.txt) is read from the graph:
    ``graph()`` returns an ONNX Runtime session (anything with its ``get_inputs`` and
    ``get_outputs``); by default one is opened on the model file, only when needed.
    """
    model_file = find_model_file(Path(path))
    declared = read_declared(model_file.parent)
    declared_input, declared_output = _section(declared, "input"), _section(declared, "output")
    session = functools.cache(graph or functools.partial(_open_session, model_file))
    try:
        if {"height", "width"} <= declared_input.keys():
            height, width = int(declared_input["height"]), int(declared_input["width"])
        else:
            height, width = _graph_size(session().get_inputs()[0].shape, model_file)
        input_name = str(declared_input.get("name") or session().get_inputs()[0].name)
        output_name = str(declared_output.get("name") or session().get_outputs()[0].name)
        dtype = declared_input.get("dtype") or _GRAPH_DTYPES.get(session().get_inputs()[0].type)
    except (TypeError, ValueError) as error:
        raise LayoutError(
            f"{model_file.parent}/{METADATA_FILE}: bad input section: {error}"
        ) from error
    return ModelMetadata(
        model_file=model_file,
        classes=tuple(str(name) for name in declared.get("classes", [])),
        input_name=input_name,
        height=height,
        width=width,
        output_name=output_name,
        preprocessing=_preprocessing(declared_input.get("preprocessing", "none"), model_file),
        input_dtype=str(dtype or "uint8"),
        input_layout=str(declared_input.get("layout", "NHWC")),
        precision=str(declared.get("precision", "float32")),
    )


def _section(declared: dict[str, Any], key: str) -> dict[str, Any]:
    value = declared.get(key)
    return value if isinstance(value, dict) else {}


def _open_session(model_file: Path) -> Any:
    import onnxruntime

    return onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])


def _graph_size(shape: list[Any], model_file: Path) -> tuple[int, int]:
    if len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[2], int):
        raise LayoutError(
            f"{model_file}: input shape {shape} is not [batch, H, W, 3] with a fixed "
            f"height and width; add {METADATA_FILE}"
        )
    return shape[1], shape[2]


def _preprocessing(declared: object, model_file: Path) -> Preprocessing:
    from clothing.gateway.imaging import PREPROCESSINGS

    for name in PREPROCESSINGS:
        if declared == name:
            return name
    raise LayoutError(f"unknown preprocessing {declared!r} in {model_file.parent}")
