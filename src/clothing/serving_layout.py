"""The folder layout the model server reads: ``<model_dir>/<version>/model.onnx`` and friends.

``metadata.json`` says what the gateway needs to feed the model (input name,
dtype, size, preprocessing; output name; class names); ``classes.txt`` holds
the class names for tools that read only it. Light on purpose: every extra may
import it.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

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
    """The version folder cannot be written."""


def next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def check_writable(model_dir: Path, version: int, *, overwrite: bool) -> Path:
    """The version folder to write; refuses a non-positive version or an occupied one."""
    if version < 1:
        raise LayoutError("the version must be a positive integer")
    target = model_dir / str(version)
    if (target / MODEL_FILE).exists() and not overwrite:
        raise LayoutError(f"{target} already holds a model; pick another --version")
    return target


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
