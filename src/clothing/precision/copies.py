"""What every reduced-precision copy of a model shares (``clothing fp16``, ``clothing quantize``).

A copy is staged in a scratch folder with the source's ``classes.txt`` and
``metadata.json``, measured against the source on labelled photos with
``clothing evaluate``'s code, and published as OUTPUT/<version>/ only when its
accuracy holds. The copy keeps the source's version number, so the copy of
``models/clothing-model/1`` is ``OUTPUT/1``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clothing.serving_layout import (
    CLASSES_FILE,
    METADATA_FILE,
    MODEL_FILE,
    metadata_bytes,
    write_version,
)
from clothing.training.arguments import add_inference_arguments, add_model_argument

SIDECAR_FILES = (CLASSES_FILE, METADATA_FILE)


def add_copy_arguments(parser: argparse.ArgumentParser, *, data_help: str) -> None:
    """--model, --data, --output, --max-drop, --batch-size and --threads."""
    add_model_argument(parser)
    parser.add_argument("--data", type=Path, required=True, help=data_help)
    parser.add_argument(
        "--output", type=Path, required=True, help="base path for the copy (OUTPUT/<version>/)"
    )
    parser.add_argument(
        "--max-drop",
        type=float,
        default=0.5,
        help="most top-1 accuracy the copy may lose, in percentage points (default 0.5)",
    )
    add_inference_arguments(parser)


def accuracy_holds(source: float, copy: float, max_drop_points: float) -> bool:
    """Whether ``copy`` (a 0..1 fraction) is at most ``max_drop_points`` below ``source``."""
    return (source - copy) * 100.0 <= max_drop_points + 1e-9


def version_of(model_file: Path) -> str:
    """The version folder's name (``1`` for a loose file)."""
    return model_file.parent.name if model_file.parent.name.isdigit() else "1"


def stage(model: Any, model_file: Path, directory: Path) -> Path:
    """Save ``model`` (an ``onnx.ModelProto``) and the source's sidecar files in ``directory``."""
    import onnx

    directory.mkdir(parents=True)
    onnx.save(model, str(directory / MODEL_FILE))
    for name in SIDECAR_FILES:
        if (model_file.parent / name).is_file():
            shutil.copy2(model_file.parent / name, directory / name)
    return directory / MODEL_FILE


def record_check(
    staged: Path, model_file: Path, precision: str, check_name: str, report: dict[str, Any]
) -> None:
    """Write the staged copy's metadata.json: the source's, plus precision and the check."""
    source_metadata = model_file.parent / METADATA_FILE
    info = json.loads(source_metadata.read_text()) if source_metadata.is_file() else {}
    info["precision"] = precision
    info["converted_from"] = str(model_file)
    info.setdefault("metrics", {})[check_name] = report
    (staged.parent / METADATA_FILE).write_bytes(metadata_bytes(info))


def publish(staged: Path, output: Path) -> Path:
    """Write the staged version folder as OUTPUT/<version>/ at once, replacing an older copy."""
    files = {path.name: path.read_bytes() for path in staged.parent.iterdir() if path.is_file()}
    target = write_version(output, int(staged.parent.name), files, overwrite=True)
    return target / MODEL_FILE


def publish_if_it_holds(
    model: Any,
    model_file: Path,
    output: Path,
    *,
    precision: str,
    compare: Callable[[Path], dict[str, Any]],
    failures: Callable[[dict[str, Any]], list[str]],
    checked_on: str = "",
) -> int:
    """Stage ``model``, compare it with its source, and publish it only if nothing fails.

    ``compare(staged_model_file)`` reports ``top1_accuracy_float32`` and
    ``top1_accuracy_<precision>`` (and whatever ``failures`` reads); the report is
    recorded in the copy's metadata.json as ``<precision>_check``. Exit code: 0 when
    written, 1 when refused.
    """
    with tempfile.TemporaryDirectory(prefix=f"{precision}-") as scratch:
        staged = stage(model, model_file, Path(scratch) / version_of(model_file))
        report = compare(staged)
        print(
            f"top-1 accuracy on {report['images']} images{checked_on}: "
            f"float32 {report['top1_accuracy_float32']:.4f}, "
            f"{precision} {report[f'top1_accuracy_{precision}']:.4f}; "
            f"same top-1 class for {report['top1_agreement']:.2%} of them"
        )
        reasons = failures(report)
        if reasons:
            for reason in reasons:
                print(f"error: {reason}", file=sys.stderr)
            print(f"error: the {precision} copy does not hold; nothing written", file=sys.stderr)
            return 1
        record_check(staged, model_file, precision, f"{precision}_check", report)
        written = publish(staged, output)
    print(f"wrote {written}")
    return 0
