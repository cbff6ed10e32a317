"""The folder layout the model server reads: ``<model_dir>/<version>/model.onnx`` and friends.

``metadata.json`` says what a client needs to feed the model (input name,
dtype, size, preprocessing; output name; class names); ``classes.txt`` holds
the class names for tools that read only it. Everything that writes a version
(export, convert, the reduced-precision copies) or reads one back (the model
server, evaluation, the benchmark) goes through this module: writing a version
all at once, finding the newest one, and ``metadata.json``'s schema
(:func:`declare` writes it; :func:`describe_interface` reads it, together
with what the model's graph says). The gateway never reads these files: it
feeds :func:`describe_interface` with the ``model_info`` and SignatureDef a
model server sends. Light on purpose: every extra may import it (numpy and
ONNX Runtime are imported only where a function needs them).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from clothing.preprocessing import PREPROCESSINGS, Preprocessing, scale_pixels

if TYPE_CHECKING:
    import numpy as np

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
# The model server's flags as shipped (compose, the manifests, `clothing up`, the
# benchmark's "ours"): dynamic batching with its default parameters, which turns
# concurrent one-image calls into batches on one-thread sessions (measured in
# docs/benchmarks.md, "Where a photo's CPU goes").
SHIPPED_MODEL_SERVER_FLAGS = ("--enable_batching",)

InputDtype = Literal["uint8", "float32"]
INPUT_DTYPES: tuple[InputDtype, ...] = ("uint8", "float32")
# The output this project's models name, picked among several when metadata names none.
DEFAULT_OUTPUT_NAME = "probabilities"


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
class ModelInterface:
    """What a client feeds one model version and gets back (``metadata.json``'s schema).

    The file may hold more (training settings, metrics); these are the fields read back.
    """

    classes: tuple[str, ...]  # empty when neither the metadata nor classes.txt lists them
    input_name: str
    height: int
    width: int
    output_name: str
    preprocessing: Preprocessing = "none"
    input_dtype: InputDtype = "uint8"
    input_layout: str = "NHWC"
    precision: str = "float32"  # "float16" or "int8" for clothing fp16 / clothing quantize

    def to_model_input(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NHWC pixels -> what the model's input expects (the gateway's scaling)."""
        if self.preprocessing == "none":
            return pixels
        return scale_pixels(pixels, self.preprocessing)


@dataclass(frozen=True)
class ModelMetadata(ModelInterface):
    """A version on disk: its model file and its :class:`ModelInterface`."""

    model_file: Path = field(kw_only=True)

    @property
    def version(self) -> int | None:
        """The version folder's number; ``None`` for a model file outside the layout."""
        name = self.model_file.parent.name
        return int(name) if name.isdigit() else None


class MetadataError(LayoutError):
    """The declared metadata and the graph do not describe a model a client can feed."""


class NeedsGraph(MetadataError):
    """The declared metadata leaves out something only the model's graph can tell."""


@dataclass(frozen=True)
class GraphTensor:
    name: str
    dtype: InputDtype | None  # None for a type no client of this project sends
    shape: tuple[int, ...]  # -1 where a size is not fixed


@dataclass(frozen=True)
class GraphFacts:
    """What a model's graph says of itself: an ONNX Runtime session's inputs and outputs
    (:func:`onnx_graph_facts`), or the SignatureDef a model server sends."""

    inputs: tuple[GraphTensor, ...]
    outputs: tuple[str, ...]


def describe_interface(declared: Mapping[str, Any], graph: GraphFacts | None) -> ModelInterface:
    """A model's interface from its declared metadata and its graph; no file is read.

    ``declared`` is ``metadata.json`` as written (:func:`read_declared`), or the
    ``model_info`` a model server sends with it. The graph wins where it is definite
    (names, dtype, fixed sizes), as for TF Serving's clients; the metadata picks among
    several tensors, fills the sizes the graph leaves open and alone tells the
    preprocessing and the class names. A float input with no declared preprocessing is
    taken for a Keras Xception export. Without a graph the metadata must say everything
    (:class:`NeedsGraph` otherwise), which spares opening a model to read it.
    :class:`MetadataError` for anything else a client could not use.
    """
    declared_input, declared_output = section(declared, "input"), section(declared, "output")
    if graph is None:
        input_name = str(_required(declared_input, "name"))
        dtype = _dtype(_required(declared_input, "dtype"))
        height = _declared_size(declared_input, "height", missing=NeedsGraph)
        width = _declared_size(declared_input, "width", missing=NeedsGraph)
        output_name = str(_required(declared_output, "name"))
    else:
        tensor = _pick(graph.inputs, declared_input.get("name"), "input")
        if tensor.dtype is None:
            raise MetadataError(f"model input {tensor.name!r} has an unsupported dtype")
        input_name, dtype = tensor.name, tensor.dtype
        height, width = _image_size(tensor.shape, declared_input)
        outputs = tuple(GraphTensor(name, None, ()) for name in graph.outputs)
        wanted = declared_output.get("name") or DEFAULT_OUTPUT_NAME
        output_name = _pick(outputs, wanted, "output").name
    classes = declared.get("classes")
    return ModelInterface(
        classes=tuple(str(name) for name in classes) if isinstance(classes, list) else (),
        input_name=input_name,
        height=height,
        width=width,
        output_name=output_name,
        preprocessing=_preprocessing(declared_input.get("preprocessing"), dtype),
        input_dtype=dtype,
        input_layout=str(declared_input.get("layout", "NHWC")),
        precision=str(declared.get("precision", "float32")),
    )


def section(declared: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``declared[key]`` when it is a mapping (``input``, ``output``), else empty."""
    value = declared.get(key)
    return value if isinstance(value, Mapping) else {}


def _required(section: Mapping[str, Any], key: str) -> Any:
    value = section.get(key)
    if value is None or value == "":
        raise NeedsGraph(f"the metadata gives no {key}")
    return value


def _dtype(value: object) -> InputDtype:
    for dtype in INPUT_DTYPES:
        if value == dtype:
            return dtype
    raise MetadataError(f"bad input section: dtype {value!r} is not one of {INPUT_DTYPES}")


def _declared_size(
    section: Mapping[str, Any], key: str, *, missing: type[MetadataError] = MetadataError
) -> int:
    value = section.get(key)
    if value is None:
        raise missing("model input has no fixed height and width")
    number = value
    # JSON numbers that went through a protobuf Struct arrive as floats (224.0).
    whole_float = isinstance(value, float) and value.is_integer()
    if whole_float or (isinstance(value, str) and value.isascii() and value.isdigit()):
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int):
        raise MetadataError(f"bad input section: {key} {value!r} is not a whole number")
    if number < 1:
        raise MetadataError(f"bad input section: {key} {value!r} is not positive")
    return number


def _image_size(shape: tuple[int, ...], declared_input: Mapping[str, Any]) -> tuple[int, int]:
    if len(shape) != 4 or shape[3] not in (3, -1):
        raise MetadataError(f"model input shape {list(shape)} is not [batch, height, width, 3]")
    height = shape[1] if shape[1] > 0 else _declared_size(declared_input, "height")
    width = shape[2] if shape[2] > 0 else _declared_size(declared_input, "width")
    return height, width


def _pick(tensors: Sequence[GraphTensor], wanted: object, kind: str) -> GraphTensor:
    """The tensor named ``wanted``, else the only one."""
    for tensor in tensors:
        if tensor.name == wanted:
            return tensor
    if len(tensors) == 1:
        return tensors[0]
    raise MetadataError(f"cannot tell which {kind} to use among {sorted(t.name for t in tensors)}")


def _preprocessing(declared: object, dtype: InputDtype) -> Preprocessing:
    if declared is None:
        return "none" if dtype == "uint8" else "xception"
    for name in PREPROCESSINGS:
        if declared == name:
            return name
    raise MetadataError(f"unknown preprocessing {declared!r}")


# ONNX Runtime's type names -> numpy's dtype names.
ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}
# Those of them a client of this project sends as a model's input.
_INPUT_TYPES: dict[str, InputDtype] = {
    onnx_type: dtype
    for onnx_type, name in ONNX_TYPES.items()
    for dtype in INPUT_DTYPES
    if name == dtype
}


def onnx_graph_facts(session: Any) -> GraphFacts:
    """:class:`GraphFacts` of an ONNX Runtime session (anything with its ``get_inputs``
    and ``get_outputs``); symbolic sizes become -1."""
    return GraphFacts(
        inputs=tuple(
            GraphTensor(
                item.name,
                _INPUT_TYPES.get(item.type),
                tuple(d if isinstance(d, int) and d > 0 else -1 for d in item.shape),
            )
            for item in session.get_inputs()
        ),
        outputs=tuple(item.name for item in session.get_outputs()),
    )


def read_metadata(path: str | Path, graph: Callable[[], Any] | None = None) -> ModelMetadata:
    """Describe the model at ``path`` (see :func:`find_model_file`) from its metadata.json.

    ``classes.txt`` supplies the classes when metadata.json lists none. When the file
    leaves something out (an old export, a model with only classes.txt), the graph is
    read as well (:func:`describe_interface`): ``graph()`` returns an ONNX Runtime
    session; by default one is opened on the model file, only when needed.
    """
    model_file = find_model_file(Path(path))
    declared = read_declared(model_file.parent)
    try:
        try:
            interface = describe_interface(declared, None)
        except NeedsGraph:
            session = graph() if graph is not None else _open_session(model_file)
            interface = describe_interface(declared, onnx_graph_facts(session))
    except MetadataError as error:
        raise LayoutError(f"{model_file.parent}/{METADATA_FILE}: {error}") from error
    values = {item.name: getattr(interface, item.name) for item in fields(interface)}
    return ModelMetadata(**values, model_file=model_file)


def _open_session(model_file: Path) -> Any:
    import onnxruntime

    return onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
