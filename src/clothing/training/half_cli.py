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
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from clothing.training.evaluate_cli import add_inference_arguments, add_model_argument

PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
}
SIDECAR_FILES = ("classes.txt", "metadata.json")


def configure(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="labelled folder of class subfolders (or one whose validation/ folder is)",
    )
    parser.add_argument(
        "--output", type=Path, required=True, help="base path for the copy (OUTPUT/<version>/)"
    )
    parser.add_argument(
        "--max-drop",
        type=float,
        default=0.5,
        help="most top-1 accuracy the copy may lose, in percentage points (default 0.5)",
    )
    parser.add_argument("--device", choices=tuple(PROVIDERS), default="cpu", help="where to check")
    add_inference_arguments(parser)


def accuracy_holds(source: float, copy: float, max_drop_points: float) -> bool:
    """Whether ``copy`` (a 0..1 accuracy) is at most ``max_drop_points`` below ``source``."""
    return (source - copy) * 100.0 <= max_drop_points + 1e-9


def _metadata(source_dir: Path, model_file: Path, report: dict[str, Any]) -> dict[str, Any]:
    metadata_file = source_dir / "metadata.json"
    info = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
    info["precision"] = "float16"
    info["converted_from"] = str(model_file)
    info.setdefault("metrics", {})["float16_check"] = report
    return info


def _stage(model_file: Path, directory: Path) -> Path:
    """Write the float16 model and the source's sidecar files into ``directory``."""
    import onnx

    from clothing.training.half import to_float16

    directory.mkdir(parents=True)
    onnx.save(to_float16(model_file), str(directory / "model.onnx"))
    for name in SIDECAR_FILES:
        if (model_file.parent / name).is_file():
            shutil.copy2(model_file.parent / name, directory / name)
    return directory / "model.onnx"


def _compare(args: argparse.Namespace, model_file: Path, copy_file: Path) -> dict[str, Any]:
    """Both models on the labelled folder: accuracies and top-1 agreement."""
    from clothing.training.evaluate import evaluate
    from clothing.training.evaluate_cli import labelled_folder

    folder = labelled_folder(args.data)
    settings = {"batch_size": args.batch_size, "threads": args.threads}
    source, copy = (
        evaluate(path, folder, providers=PROVIDERS[args.device], **settings)
        for path in (model_file, copy_file)
    )
    return {
        "data": str(folder),
        "device": args.device,
        "images": source.images,
        "top1_accuracy_float32": round(source.accuracy, 4),
        "top1_accuracy_float16": round(copy.accuracy, 4),
        "top1_agreement": round(float((source.predictions == copy.predictions).mean()), 4),
        "max_drop_points": args.max_drop,
    }


def run(args: argparse.Namespace) -> int:
    from onnx.checker import ValidationError

    from clothing.training.data import DatasetError
    from clothing.training.evaluate import ModelError, resolve_model_file

    if args.max_drop < 0 or args.batch_size < 1 or args.threads < 1:
        print("error: --max-drop must be >= 0, --batch-size and --threads >= 1", file=sys.stderr)
        return 2
    try:
        model_file = resolve_model_file(args.model)
        version = model_file.parent.name if model_file.parent.name.isdigit() else "1"
        with tempfile.TemporaryDirectory(prefix="fp16-") as scratch:
            staged = _stage(model_file, Path(scratch) / version)
            report = _compare(args, model_file, staged)
            print(
                f"top-1 accuracy on {report['images']} images ({args.device}): "
                f"float32 {report['top1_accuracy_float32']:.4f}, "
                f"float16 {report['top1_accuracy_float16']:.4f}; "
                f"same top-1 class for {report['top1_agreement']:.2%} of them"
            )
            if not accuracy_holds(
                report["top1_accuracy_float32"], report["top1_accuracy_float16"], args.max_drop
            ):
                print(
                    f"error: float16 loses more than {args.max_drop} points; nothing written",
                    file=sys.stderr,
                )
                return 1
            metadata = _metadata(model_file.parent, model_file, report)
            (staged.parent / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
            target = args.output / version
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(staged.parent, target)
    except (ModelError, DatasetError, ValidationError, KeyError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {target / 'model.onnx'}")
    return 0
