"""Keras models built once per session, converted once, served by one real model server.

TensorFlow runs only in subprocesses (``keras_models.py``, ``clothing convert``,
``notes_client.py``): it registers the same proto file names as
``clothing.proto``, which this process uses to talk to the model server.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from clothing.gateway.imaging import InputSpec, prepare
from clothing.preprocessing import Preprocessing
from tests import environment
from tests.fixtures import CLASSES, ModelServerProcess, run_model_server
from tests.images import encode, photo_like

HERE = Path(__file__).parent
SMALL_SIDE = 32
XCEPTION_SIDE = 71
TF_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def tensorflow_missing() -> str | None:
    """Why the TensorFlow tests cannot run here, or None when they can."""
    installed = []
    for distribution in ("tensorflow-cpu", "tensorflow"):
        try:
            installed.append(importlib.metadata.version(distribution))
        except importlib.metadata.PackageNotFoundError:
            continue
    # tensorflow-protobuf (dev) also provides a `tensorflow` package: look for the real one.
    if not installed:
        return "TensorFlow is not installed (pip install -c requirements/lock.txt '.[convert]')"
    if importlib.util.find_spec("tf2onnx") is None:
        return "tf2onnx is not installed (pip install -c requirements/lock.txt '.[convert]')"
    return None


def run_tool(
    args: Sequence[str | os.PathLike[str]], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """A Python tool in its own process, with TensorFlow's start-up chatter turned down."""
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **TF_ENV},
        check=False,
    )


def run_convert(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return run_tool(["-m", "clothing.cli", "convert", *args])


def synthetic_photos(count: int = 6) -> list[bytes]:
    """Smooth colour fields with some texture, as JPEG: image-like, not noise."""
    rng = np.random.default_rng(2024)
    return [encode(photo_like((160, 120), rng), "JPEG", quality=90) for _ in range(count)]


def rows(
    photos: Sequence[bytes], side: int, dtype: str, preprocessing: Preprocessing
) -> np.ndarray:
    """What the gateway sends the model for these photos."""
    spec = InputSpec("input", side, side, dtype, preprocessing)  # type: ignore[arg-type]
    return np.stack([prepare(photo, spec) for photo in photos])


@dataclass(frozen=True)
class Photos:
    folder: Path
    encoded: list[bytes]
    small_pixels: np.ndarray  # uint8 [N, 32, 32, 3]
    inputs: dict[str, np.ndarray]  # float rows per (model, preprocessing)


@dataclass(frozen=True)
class KerasModels:
    folder: Path
    reference: dict[str, np.ndarray]  # Keras's outputs for Photos.inputs, same keys


@dataclass(frozen=True)
class Converted:
    base: Path  # one folder per model name, each with version 1
    server: ModelServerProcess


# model name -> (source file under the Keras folder, extra `clothing convert` flags)
CONVERSIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "small-h5": ("small.h5", ("--preprocessing", "xception")),
    "small-uint8": ("small.h5", ("--preprocessing", "xception", "--serving-input", "uint8")),
    "small-keras": ("small.keras", ("--preprocessing", "imagenet", "--softmax")),
    "small-savedmodel": ("small_savedmodel", ("--preprocessing", "xception")),
    "xception": ("xception.h5", ("--preprocessing", "xception")),
}


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Photos:
    folder = tmp_path_factory.mktemp("photos")
    encoded = synthetic_photos()
    for index, data in enumerate(encoded):
        (folder / f"photo-{index}.jpg").write_bytes(data)
    return Photos(
        folder=folder,
        encoded=encoded,
        small_pixels=rows(encoded, SMALL_SIDE, "uint8", "none"),
        inputs={
            "small_xception": rows(encoded, SMALL_SIDE, "float32", "xception"),
            "small_imagenet": rows(encoded, SMALL_SIDE, "float32", "imagenet"),
            "xception": rows(encoded, XCEPTION_SIDE, "float32", "xception"),
        },
    )


@pytest.fixture(scope="session")
def keras_models(photos: Photos, tmp_path_factory: pytest.TempPathFactory) -> KerasModels:
    reason = tensorflow_missing()
    environment.require(reason is None, str(reason))
    folder = tmp_path_factory.mktemp("keras")
    inputs = folder / "inputs.npz"
    np.savez(inputs, **photos.inputs)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
    built = run_tool([HERE / "keras_models.py", folder, inputs])
    assert built.returncode == 0, built.stderr[-4000:]
    with np.load(folder / "reference.npz") as stored:
        reference = {key: stored[key] for key in stored.files}
    return KerasModels(folder, reference)


@pytest.fixture(scope="session")
def converted(
    keras_models: KerasModels, photos: Photos, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Converted]:
    base = tmp_path_factory.mktemp("served")

    def convert(name: str) -> subprocess.CompletedProcess[str]:
        source, flags = CONVERSIONS[name]
        return run_convert(
            keras_models.folder / source,
            "--model-dir",
            base / name,
            "--classes",
            ",".join(CLASSES),
            "--check-data",
            photos.folder,
            *flags,
        )

    # Two at a time: most of each run is TensorFlow starting up.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(CONVERSIONS, pool.map(convert, CONVERSIONS), strict=True))
    for name, result in results.items():
        assert result.returncode == 0, f"{name}: {result.stderr[-4000:]}"
    config = base / "models.config"
    entries = "".join(
        f'  config {{ name: "{name}" base_path: "{base / name}" model_platform: "onnx" }}\n'
        for name in CONVERSIONS
    )
    config.write_text(f"model_config_list {{\n{entries}}}\n")
    with run_model_server(
        None, extra_args=[f"--model_config_file={config}"], ready_timeout=180
    ) as server:
        yield Converted(base, server)
