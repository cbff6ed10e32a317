"""Measure an ONNX clothing model on a labelled image folder.

DATA holds one subfolder per class, or a validation/ folder that does. Images
are preprocessed as the gateway does (RGB, plain bilinear resize to the model's
input size). Prints top-1 accuracy, per-class precision and recall and the
confusion matrix; --output also writes metrics.json, report.txt and
confusion_matrix.png. Needs only ONNX Runtime, numpy and Pillow.

Cross-validation: with --folds K --fold I the photos are the part I of K that a
`clothing train --folds K --fold I` run held out (DATA holds train/ and
validation/), and --fold-output saves every photo's answer to a fold file.
--cross-validation DIR prints top-1 and each class's recall as mean ± standard
deviation over the fold files in DIR, without any model or photo.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clothing.serving_layout import METADATA_FILE, metadata_bytes
from clothing.training.arguments import add_inference_arguments, add_model_argument
from clothing.training.evaluate import labelled_folder


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder of class subfolders (or one whose validation/ folder is); required"
        " unless --cross-validation",
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
    parser.add_argument(
        "--folds",
        type=int,
        default=0,
        metavar="K",
        help="measure on the part --fold of K that `clothing train --folds K` held out",
    )
    parser.add_argument("--fold", type=int, default=0, metavar="I", help="that part (1 to K)")
    parser.add_argument(
        "--fold-output",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --folds: save the fold's figures and every photo's answer here",
    )
    parser.add_argument(
        "--cross-validation",
        type=Path,
        default=None,
        metavar="DIR",
        help="print the cross-validated figures of the fold files in DIR and exit",
    )


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

    if args.cross_validation is not None:
        return print_cross_validation(args.cross_validation)
    problem = _invalid(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    folder = labelled_folder(args.data)
    try:
        model_file = find_model_file(args.model)
        if args.folds:
            return evaluate_fold(args, model_file)
        result = evaluate(model_file, folder, batch_size=args.batch_size, threads=args.threads)
    except (LayoutError, DatasetError, KeyError, ValueError) as error:
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


def _invalid(args: argparse.Namespace) -> str | None:
    if args.data is None:
        return "--data is required (or --cross-validation DIR)"
    if args.batch_size < 1 or args.threads < 1:
        return "--batch-size and --threads must be at least 1"
    if args.folds == 0:
        return "--fold and --fold-output need --folds" if args.fold or args.fold_output else None
    if args.folds < 2 or not 1 <= args.fold <= args.folds:
        return "--folds needs at least 2 parts and --fold one of them (1 to K)"
    return None


def evaluate_fold(args: argparse.Namespace, model_file: Path) -> int:
    """Measure the model on the photos its fold held out; save them to --fold-output."""
    from clothing.training.cross_validation import (
        check_held_out,
        fold_result,
        write_fold_result,
    )
    from clothing.training.data import content_hash, list_classes
    from clothing.training.evaluate import evaluate_images
    from clothing.training.folds import pooled_images, split_fold
    from clothing.training.metrics import format_report

    photos = pooled_images(args.data, list_classes(args.data / "train"), None)
    check_held_out(model_file, args.folds, args.fold, content_hash(args.data, list(photos.paths)))
    _, held_out = split_fold(photos, args.folds, args.fold)
    result = evaluate_images(model_file, held_out, batch_size=args.batch_size, threads=args.threads)
    print(f"model: {model_file}\ndata: fold {args.fold} of {args.folds} ({result.images} images)\n")
    print(format_report(result.matrix, result.classes), end="")
    if args.fold_output is not None:
        saved = fold_result(result, held_out, data=args.data, folds=args.folds, fold=args.fold)
        print(f"wrote {write_fold_result(saved, args.fold_output)}")
    return 0


def print_cross_validation(directory: Path) -> int:
    from clothing.training.cross_validation import FoldResultsError, format_summary, read_results

    try:
        summary = read_results(directory)
    except (FoldResultsError, OSError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(summary), end="")
    return 0
