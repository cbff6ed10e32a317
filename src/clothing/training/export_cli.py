"""Export a training checkpoint to ONNX in the model server's layout.

Writes MODEL_DIR/VERSION/model.onnx (input ``image`` uint8 [batch, H, W, 3],
output ``probabilities`` float32 [batch, classes], normalisation inside the graph),
classes.txt and metadata.json. VERSION defaults to the next free integer. The
ONNX Runtime output is compared with PyTorch's on real images (--check-data) and
the export fails if they differ by more than 1e-4. Re-exporting the same
checkpoint gives byte-identical files. Given several checkpoints of one
network (the same --arch, classes and image sizes), every weight of the
exported network is their mean (a uniform model soup: runs that differ only in
their seed often average to a better network than either). --flip-average
bakes horizontal-flip test-time augmentation into the graph; the signature
stays the same.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clothing.serving_layout import PRECISION_BASE_PATHS
from clothing.version_flags import add_version_arguments

if TYPE_CHECKING:
    import numpy as np

CHECK_IMAGES = 16


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=Path,
        nargs="+",
        default=[Path("runs/train/checkpoint.pt")],
        help="checkpoint.pt written by `clothing train`; several (runs of one recipe with"
        " other seeds) are exported as one network holding the mean of their weights",
    )
    add_version_arguments(
        parser,
        model_dir=Path(PRECISION_BASE_PATHS["float32"]),
        model_dir_help="model base path holding integer version folders",
    )
    parser.add_argument(
        "--check-data",
        type=Path,
        default=None,
        help="folder of class subfolders whose images check ONNX Runtime against PyTorch"
        " (default: random pixels)",
    )
    parser.add_argument(
        "--flip-average",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="average the softmax of each photo and its mirror image inside the graph"
        " (test-time augmentation; doubles inference cost)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def check_images(folder: Path | None, size: int) -> np.ndarray:
    import numpy as np

    from clothing.training.data import list_classes, list_images, load_batch

    if folder is None:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, size=(4, size, size, 3), dtype=np.uint8)
    images = list_images(folder, list_classes(folder))
    step = max(1, len(images) // CHECK_IMAGES)
    return load_batch(list(images.paths[::step][:CHECK_IMAGES]), size, size)


def run(args: argparse.Namespace) -> int:
    import torch

    from clothing.serving_layout import LayoutError
    from clothing.training.checkpoint import CheckpointError
    from clothing.training.data import DatasetError
    from clothing.training.export import ExportError, export, load_checkpoints

    torch.set_num_threads(max(1, args.threads))
    try:
        checkpoint = load_checkpoints(args.checkpoint)
        images = check_images(args.check_data, checkpoint.image_size)
        result = export(
            checkpoint,
            args.model_dir,
            version=args.version,
            check_images=images,
            overwrite=args.overwrite,
            flip_average=args.flip_average,
        )
    except (ExportError, CheckpointError, LayoutError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    size_mb = result.model_path.stat().st_size / 1e6
    print(f"wrote {result.model_path} ({size_mb:.1f} MB)")
    print(f"ONNX Runtime vs PyTorch max abs difference: {result.parity:.2e}")
    return 0
