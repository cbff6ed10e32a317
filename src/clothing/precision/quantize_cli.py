"""Make a static int8 copy of an ONNX clothing model for CPUs, kept only if accuracy holds.

Activation ranges are calibrated on photos from DATA/train, put through the
gateway's own preprocessing; weights are int8 with a scale per output channel
(ONNX Runtime's quantize_static, QDQ form), and by default each convolution's
weights round up or down as keeps its output on those photos closest to
float32's (learned rounding, with PyTorch from the train extra). The copy has the
same inputs and outputs as the source (uint8 pixels in, float32 probabilities
out) and goes to OUTPUT/<version>/ with the source's classes.txt and
metadata.json (which records the check); serve it like any model (e.g.
--model_base_path OUTPUT). Both models are measured on DATA/validation as
`clothing evaluate` does. If the copy's top-1 accuracy is more than --max-drop
points below the source's, or any class's recall more than --max-recall-drop
points below, nothing is written and the exit code is 1. `clothing speed`
compares the two copies' images/s in process.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from clothing.precision.copies import accuracy_holds, add_copy_arguments, publish_if_it_holds
from clothing.precision.learned_rounding import STEPS
from clothing.precision.quantize import METHODS, ROUNDINGS

DEFAULT_METHOD = "minmax"
DEFAULT_ROUNDING = "learned"
DEFAULT_PHOTOS = 256


def configure(parser: argparse.ArgumentParser) -> None:
    add_copy_arguments(
        parser,
        data_help="labelled photos with train/ (calibration) and validation/ (the check) folders",
    )
    parser.add_argument(
        "--max-recall-drop",
        type=float,
        default=2.0,
        help="most recall any one class may lose, in percentage points (default 2)",
    )
    parser.add_argument(
        "--method",
        choices=tuple(METHODS),
        default=DEFAULT_METHOD,
        help=f"how activation ranges are calibrated (default {DEFAULT_METHOD})",
    )
    parser.add_argument(
        "--rounding",
        choices=ROUNDINGS,
        default=DEFAULT_ROUNDING,
        help="how weights land on the int8 grid: learned (default; each weight rounds up or"
        " down as keeps its convolution's output on calibration photos, needs the train"
        " extra's PyTorch), corrected (nearest, then each layer's bias absorbs the mean"
        " shift rounding adds) or nearest",
    )
    parser.add_argument(
        "--rounding-steps",
        type=int,
        default=STEPS,
        help=f"gradient steps per convolution for --rounding learned (default {STEPS})",
    )
    parser.add_argument(
        "--calibration-photos",
        type=int,
        default=DEFAULT_PHOTOS,
        help=f"training photos to calibrate on, spread over every class (default {DEFAULT_PHOTOS})",
    )


def _folders(data: Path) -> tuple[Path, Path]:
    from clothing.training.data import DatasetError

    train, validation = data / "train", data / "validation"
    if not train.is_dir() or not validation.is_dir():
        raise DatasetError(
            f"{data} needs train/ (to calibrate on) and validation/ (to check on) folders"
        )
    return train, validation


def _compare(args: argparse.Namespace, model_file: Path, copy_file: Path) -> dict[str, Any]:
    """Both models on the validation photos: accuracy, agreement and recall per class."""
    from clothing.training.evaluate import evaluate

    _, folder = _folders(args.data)
    settings = {"batch_size": args.batch_size, "threads": args.threads}
    source, copy = (evaluate(path, folder, **settings) for path in (model_file, copy_file))
    return {
        "data": folder.name,
        "images": source.images,
        "top1_accuracy_float32": round(source.accuracy, 4),
        "top1_accuracy_int8": round(copy.accuracy, 4),
        "top1_agreement": round(float((source.predictions == copy.predictions).mean()), 4),
        "recall_float32": {row.name: round(row.recall, 4) for row in source.per_class},
        "recall_int8": {row.name: round(row.recall, 4) for row in copy.per_class},
        "max_drop_points": args.max_drop,
        "max_recall_drop_points": args.max_recall_drop,
    }


def failures(report: dict[str, Any]) -> list[str]:
    """Why the copy may not be written: top-1 or a class's recall fell too far."""
    reasons = []
    source, copy = report["top1_accuracy_float32"], report["top1_accuracy_int8"]
    if not accuracy_holds(source, copy, report["max_drop_points"]):
        reasons.append(
            f"top-1 accuracy {source:.4f} -> {copy:.4f} "
            f"(more than {report['max_drop_points']} points lost)"
        )
    for name, before in report["recall_float32"].items():
        after = report["recall_int8"][name]
        if not accuracy_holds(before, after, report["max_recall_drop_points"]):
            reasons.append(
                f"recall of {name} {before:.4f} -> {after:.4f} "
                f"(more than {report['max_recall_drop_points']} points lost)"
            )
    return reasons


def _calibrate_and_quantize(args: argparse.Namespace, model_file: Path) -> Any:
    from clothing.precision.quantize import calibration_photos, to_int8
    from clothing.serving_layout import read_metadata

    train, _ = _folders(args.data)
    info = read_metadata(model_file)
    calibration = calibration_photos(
        train,
        input_name=info.input_name,
        height=info.height,
        width=info.width,
        preprocessing=info.preprocessing,
        count=args.calibration_photos,
    )
    print(
        f"calibrating on {len(calibration.pixels)} photos from {train} ({args.method})", flush=True
    )
    model = to_int8(
        model_file,
        calibration,
        method=args.method,
        rounding=args.rounding,
        rounding_steps=args.rounding_steps,
        progress=lambda line: print(line, flush=True),
    )
    return model, len(calibration.pixels)


def _check_flags(args: argparse.Namespace) -> str | None:
    if args.max_drop < 0 or args.max_recall_drop < 0:
        return "--max-drop and --max-recall-drop must be >= 0"
    if min(args.batch_size, args.threads, args.calibration_photos, args.rounding_steps) < 1:
        return "--batch-size, --threads, --calibration-photos and --rounding-steps must be >= 1"
    if args.rounding == "learned" and importlib.util.find_spec("torch") is None:
        return (
            "--rounding learned needs PyTorch (pip install 'clothing-classifier[train]');"
            " or pass --rounding corrected"
        )
    return None


def run(args: argparse.Namespace) -> int:
    from onnx.checker import ValidationError

    from clothing.serving_layout import find_model_file
    from clothing.training.data import DatasetError

    problem = _check_flags(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        model_file = find_model_file(args.model)
        model, photos = _calibrate_and_quantize(args, model_file)
        calibration = {
            "method": args.method,
            "photos": photos,
            "data": "train",
            "rounding": args.rounding,
            **({"rounding_steps": args.rounding_steps} if args.rounding == "learned" else {}),
        }
        return publish_if_it_holds(
            model,
            model_file,
            args.output,
            precision="int8",
            compare=lambda staged: {
                **_compare(args, model_file, staged),
                "calibration": calibration,
            },
            failures=failures,
        )
    except (DatasetError, ValidationError, KeyError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
