"""Measure an ONNX clothing model on a labelled image folder.

DATA holds one subfolder per class, or a validation/ folder that does. Images
are preprocessed as the gateway does (RGB, plain bilinear resize to the model's
input size). Prints top-1 accuracy, per-class precision and recall and the
confusion matrix; --output also writes metrics.json, report.txt and
confusion_matrix.png. Needs only ONNX Runtime, numpy and Pillow.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clothing.serving_layout import METADATA_FILE, metadata_bytes


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=Path("models/clothing-model"),
        help="model.onnx, a version folder, or a base path (highest version is used)",
    )


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=32, help="images per inference call")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder of class subfolders (or one whose validation/ folder is)",
    )
    add_model_argument(parser)
    parser.add_argument(
        "--output", type=Path, default=None, help="write metrics.json, report.txt and the PNG here"
    )
    add_inference_arguments(parser)
    parser.add_argument(
        "--latency",
        action="store_true",
        help="also time the model at batch 1 and 32 (median and p90 of 20 calls)",
    )
    parser.add_argument(
        "--update-metadata",
        action="store_true",
        help="record accuracy and per-class metrics in the model's metadata.json",
    )


def labelled_folder(data: Path) -> Path:
    validation = data / "validation"
    return validation if validation.is_dir() else data


def record_in_metadata(model_file: Path, metrics: dict[str, object], data: Path) -> Path | None:
    metadata_file = model_file.parent / METADATA_FILE
    if not metadata_file.is_file():
        return None
    info = json.loads(metadata_file.read_text())
    info.setdefault("metrics", {})["evaluation"] = {"data": data.name, **metrics}
    metadata_file.write_bytes(metadata_bytes(info))
    return metadata_file


def run(args: argparse.Namespace) -> int:
    from clothing.serving_layout import LayoutError, find_model_file
    from clothing.training.data import DatasetError
    from clothing.training.evaluate import evaluate, write_outputs
    from clothing.training.metrics import format_report

    if args.batch_size < 1 or args.threads < 1:
        print("error: --batch-size and --threads must be at least 1", file=sys.stderr)
        return 2
    folder = labelled_folder(args.data)
    try:
        model_file = find_model_file(args.model)
        result = evaluate(model_file, folder, batch_size=args.batch_size, threads=args.threads)
    except (LayoutError, DatasetError, KeyError, json.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"model: {model_file}\ndata: {folder} ({result.images} images)\n")
    print(format_report(result.matrix, result.classes), end="")
    summary = result.to_json()
    if args.latency:
        from clothing.training.latency import measure

        info = result.model
        timings = measure(model_file, height=info.height, width=info.width, threads=args.threads)
        summary["latency_ms"] = {}
        for timing in timings:
            print(
                f"latency batch {timing.batch_size}: median {timing.median_ms:.1f} ms,"
                f" p90 {timing.p90_ms:.1f} ms ({args.threads} threads)"
            )
            summary["latency_ms"][f"batch_{timing.batch_size}"] = {
                "median": round(timing.median_ms, 2),
                "p90": round(timing.p90_ms, 2),
                "threads": args.threads,
            }
    if args.output is not None:
        for path in write_outputs(result, args.output, extra=summary):
            print(f"wrote {path}")
    if args.update_metadata:
        summary.pop("classes")
        written = record_in_metadata(model_file, summary, folder)
        if written is not None:
            print(f"updated {written}")
    return 0
