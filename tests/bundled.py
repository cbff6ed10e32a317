"""The models the repository ships: where they lie and what they take.

Tests ask here instead of naming a version folder or an input side, so a new
bundled version (another number, another served size) needs no test edits.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from clothing.serving_layout import (
    PRECISION_BASE_PATHS,
    ModelMetadata,
    read_metadata,
    versions_on_disk,
)

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_MODEL = ROOT / PRECISION_BASE_PATHS["float32"]
BUNDLED_INT8 = ROOT / PRECISION_BASE_PATHS["int8"]


@cache
def bundled_metadata(base_path: Path = BUNDLED_MODEL) -> ModelMetadata:
    """metadata.json of the newest version under ``base_path``."""
    return read_metadata(base_path)


def bundled_version(base_path: Path = BUNDLED_MODEL) -> Path:
    """The newest version folder under ``base_path``."""
    return bundled_metadata(base_path).model_file.parent


def bundled_side() -> int:
    """The square input side, in pixels, the bundled model is served at."""
    metadata = bundled_metadata()
    assert metadata.height == metadata.width, "the bundled model takes square photos"
    return metadata.height


def int8_bundled() -> bool:
    return bool(versions_on_disk(BUNDLED_INT8))


def cpu_default() -> Path:
    """The copy CPUs serve: int8 when it is bundled, as `clothing up` and the images do."""
    return BUNDLED_INT8 if int8_bundled() else BUNDLED_MODEL
