"""Photos to classify, and the classes the served bundled model gives them in this process."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime

from clothing.gateway.imaging import InputSpec, prepare
from tests.bundled import bundled_metadata, cpu_default
from tests.environment import dataset_path, dataset_present
from tests.images import encode, noise


def sample_photos(per_class: int = 2) -> list[bytes]:
    """Validation photos of every class when the dataset is here, else drawn images."""
    if dataset_present():
        folders = sorted(p for p in (dataset_path() / "validation").iterdir() if p.is_dir())
        paths = [path for folder in folders for path in sorted(folder.glob("*.jpg"))[:per_class]]
        return [Path(path).read_bytes() for path in paths]
    rng = np.random.default_rng(5)
    return [encode(noise((140, 180), rng), "JPEG", quality=90) for _ in range(10 * per_class)]


@cache
def _session() -> tuple[onnxruntime.InferenceSession, list[str], InputSpec]:
    # The copy the model-server image serves on CPU.
    metadata = bundled_metadata(cpu_default())
    spec = InputSpec(metadata.input_name, metadata.height, metadata.width)
    session = onnxruntime.InferenceSession(
        str(metadata.model_file), providers=["CPUExecutionProvider"]
    )
    return session, list(metadata.classes), spec


def in_process_labels(photos: list[bytes]) -> list[str]:
    """The top class of each photo: the gateway's preprocessing and the model, in-process."""
    session, classes, spec = _session()
    batch = np.stack([prepare(photo, spec) for photo in photos])
    (probabilities,) = session.run(None, {spec.name: batch})
    return [classes[int(index)] for index in probabilities.argmax(axis=1)]
