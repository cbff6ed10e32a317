"""Images/s of two copies of a model in process, interleaved: e.g. int8 against float32.

Each cell (intra-op threads x batch size) runs --rounds blocks of --seconds per
copy in alternating order (A B, B A, ...), so the machine's drift and other work
land on both; the table gives each copy's pooled images/s, the ratio
CANDIDATE ÷ BASELINE, the median of the rounds' own ratios and the lowest and
highest of them.
Random uint8 images of the model's size; ONNX Runtime on the CPU, one session per
copy and thread count. --json also writes every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clothing.bench_cli import _int_list
from clothing.serving_layout import PRECISION_BASE_PATHS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline",
        type=Path,
        default=Path(PRECISION_BASE_PATHS["float32"]),
        help=f"model repository measured first (default {PRECISION_BASE_PATHS['float32']})",
    )
    parser.add_argument(
        "--candidate",
        type=Path,
        default=Path(PRECISION_BASE_PATHS["int8"]),
        help=f"model repository compared with it (default {PRECISION_BASE_PATHS['int8']})",
    )
    parser.add_argument("--threads", type=_int_list, default=(1, 2), help="default 1,2")
    parser.add_argument("--batch-sizes", type=_int_list, default=(8, 1), help="default 8,1")
    parser.add_argument("--rounds", type=int, default=4, help="blocks per copy per cell (4)")
    parser.add_argument("--seconds", type=float, default=1.5, help="seconds per block (1.5)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")


def run(args: argparse.Namespace) -> int:
    from clothing.benchmarks.precision import compare, format_table
    from clothing.serving_layout import LayoutError

    if args.rounds < 1 or args.seconds <= 0:
        print("error: --rounds must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    try:
        cells = compare(
            args.baseline,
            args.candidate,
            threads=args.threads,
            batch_sizes=args.batch_sizes,
            rounds=args.rounds,
            seconds=args.seconds,
        )
    except (LayoutError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    names = (args.baseline.name, args.candidate.name)
    print(format_table(cells, names), end="")
    if args.json is not None:
        figures = {
            "baseline": str(args.baseline),
            "candidate": str(args.candidate),
            "rounds": args.rounds,
            "seconds_per_block": args.seconds,
            "cells": [cell.to_json() for cell in cells],
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0
