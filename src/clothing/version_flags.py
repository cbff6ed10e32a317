"""The flags of every command that writes a model version (``clothing export``, ``convert``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_version_arguments(
    parser: argparse.ArgumentParser, *, model_dir: Path | None, model_dir_help: str
) -> None:
    """--model-dir (required when ``model_dir`` is ``None``), --version and --overwrite."""
    parser.add_argument(
        "--model-dir",
        type=Path,
        required=model_dir is None,
        default=model_dir,
        help=model_dir_help,
    )
    parser.add_argument(
        "--version", type=int, default=None, help="version folder to write (default: next free)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing model in that version"
    )
