"""Make a float16 copy of an ONNX clothing model for GPUs, kept only if accuracy holds.

The copy has the same inputs and outputs as the source (uint8 pixels in, float32
probabilities out) and goes to OUTPUT/<version>/ with the source's classes.txt and
metadata.json; serve it like any model (e.g. --model_base_path OUTPUT). Both
models are measured on DATA as `clothing evaluate` does. If the copy's top-1
accuracy is more than --max-drop points below the source's, nothing is written
and the exit code is 1. On CPU, ONNX Runtime runs most float16 operators as
float32 kernels with values rounded to float16 between them, so a CPU check is a
close stand-in; --device cuda checks on the GPU itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from clothing.precision.copies import accuracy_holds, add_copy_arguments, publish_if_it_holds

__all__ = ["accuracy_holds", "configure", "run"]

PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    add_copy_arguments(
        parser, data_help="labelled folder of class subfolders (or one whose validation/ folder is)"
    )
    parser.add_argument("--device", choices=tuple(PROVIDERS), default="cpu", help="where to check")


def _compare(args: argparse.Namespace, model_file: Path, copy_file: Path) -> dict[str, Any]:
    """Both models on the labelled folder: accuracies and top-1 agreement."""
    from clothing.training.evaluate import evaluate, labelled_folder

    folder = labelled_folder(args.data)
    settings = {"batch_size": args.batch_size, "threads": args.threads}
    source, copy = (
        evaluate(path, folder, providers=PROVIDERS[args.device], **settings)
        for path in (model_file, copy_file)
    )
    return {
        "data": folder.name,
        "device": args.device,
        "images": source.images,
        "top1_accuracy_float32": round(source.accuracy, 4),
        "top1_accuracy_float16": round(copy.accuracy, 4),
        "top1_agreement": round(float((source.predictions == copy.predictions).mean()), 4),
        "max_drop_points": args.max_drop,
    }


def run(args: argparse.Namespace) -> int:
    from onnx.checker import ValidationError

    from clothing.precision.half import to_float16
    from clothing.serving_layout import find_model_file
    from clothing.training.data import DatasetError

    if args.max_drop < 0 or args.batch_size < 1 or args.threads < 1:
        print("error: --max-drop must be >= 0, --batch-size and --threads >= 1", file=sys.stderr)
        return 2
    try:
        model_file = find_model_file(args.model)
        return publish_if_it_holds(
            to_float16(model_file),
            model_file,
            args.output,
            precision="float16",
            compare=lambda staged: _compare(args, model_file, staged),
            failures=_failures,
            checked_on=f" ({args.device})",
        )
    except (DatasetError, ValidationError, KeyError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _failures(report: dict[str, Any]) -> list[str]:
    source, copy = report["top1_accuracy_float32"], report["top1_accuracy_float16"]
    if accuracy_holds(source, copy, report["max_drop_points"]):
        return []
    return [f"float16 loses more than {report['max_drop_points']} points"]
