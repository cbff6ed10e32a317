"""Flags that several commands share: the model to measure and how to run it."""

from __future__ import annotations

import argparse
from pathlib import Path


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
