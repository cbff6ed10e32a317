"""The files a training run writes and export reads.

``checkpoint.pt`` holds the state the run keeps (its best or last epoch), the
class names, what ``metadata.json`` will record of the recipe, and the kept
epoch's validation accuracy; ``classes.txt`` and ``history.json`` sit beside it.
The whole state for resuming is ``resume.pt`` (``clothing.training.resume``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clothing.serving_layout import CLASSES_FILE, classes_bytes

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.json"


class CheckpointError(ValueError):
    """The file is not a training checkpoint."""


@dataclass(frozen=True)
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    classes: list[str]
    training: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def arch(self) -> str:
        return str(self.training["arch"])

    @property
    def image_size(self) -> int:
        """The side the model is served at (larger than its training side, if it was chosen so)."""
        return int(self.training.get("serve_image_size", self.training["image_size"]))


def load_checkpoint(path: Path) -> Checkpoint:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        return Checkpoint(
            state_dict=stored["state_dict"],
            classes=list(stored["classes"]),
            training=dict(stored["training"]),
            metrics=dict(stored.get("metrics", {})),
        )
    except (KeyError, TypeError, RuntimeError, EOFError) as error:
        raise CheckpointError(f"{path} is not a training checkpoint: {error}") from error


def write_checkpoint(
    output: Path,
    *,
    state: dict[str, torch.Tensor],
    classes: tuple[str, ...],
    training_info: dict[str, object],
    best_accuracy: float,
    history: list[dict[str, object]],
) -> Path:
    """The run's kept state, its classes and its history, written after every epoch."""
    output.mkdir(parents=True, exist_ok=True)
    checkpoint = output / CHECKPOINT_NAME
    torch.save(
        {
            "state_dict": state,
            "classes": list(classes),
            "training": training_info,
            "metrics": {"validation_accuracy": best_accuracy},
        },
        checkpoint,
    )
    (output / CLASSES_FILE).write_bytes(classes_bytes(classes))
    summary = {"training": training_info, "epochs": history}
    (output / HISTORY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    return checkpoint
