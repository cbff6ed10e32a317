"""The state of a training run, saved after every epoch so that a stopped run carries on.

``resume.pt`` in the output folder holds everything the next epoch depends on:
the recipe, the network, the optimiser and its schedule, the weight average,
every random generator, the history and the best state so far. Restoring it
and running the remaining epochs gives the same numbers as a run that never
stopped. It is written to a temporary file and renamed, so an interruption
while saving leaves the previous epoch's state intact.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESUME_NAME = "resume.pt"


class ResumeError(ValueError):
    """The folder holds no usable training state."""


@dataclass
class RandomStates:
    """Every generator a training step draws from, as plain values ``torch.load`` accepts."""

    python: Any
    numpy_global: dict[str, Any]
    numpy: dict[str, Any]
    torch_global: torch.Tensor
    torch_generator: torch.Tensor

    @classmethod
    def capture(cls, rng: np.random.Generator, generator: torch.Generator) -> RandomStates:
        legacy = np.random.get_state(legacy=False)
        legacy["state"] = {**legacy["state"], "key": legacy["state"]["key"].tolist()}
        return cls(
            python=random.getstate(),
            numpy_global=legacy,
            numpy=dict(rng.bit_generator.state),
            torch_global=torch.get_rng_state(),
            torch_generator=generator.get_state(),
        )

    def restore(self, rng: np.random.Generator, generator: torch.Generator) -> None:
        random.setstate(self.python)
        legacy = dict(self.numpy_global)
        key = np.asarray(legacy["state"]["key"], dtype=np.uint32)
        legacy["state"] = {**legacy["state"], "key": key}
        np.random.set_state(legacy)
        rng.bit_generator.state = self.numpy
        torch.set_rng_state(self.torch_global)
        generator.set_state(self.torch_generator)


@dataclass
class TrainingState:
    """One finished epoch's snapshot of a run."""

    config: dict[str, Any]
    data_hash: str
    stage: str  # the stage the last finished epoch belongs to: "cached" or "full"
    network: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    average: dict[str, torch.Tensor] | None
    random_states: RandomStates
    history: list[dict[str, Any]]
    best_epoch: int
    best_accuracy: float
    best_state: dict[str, torch.Tensor]
    seconds: float


def save_state(output: Path, state: TrainingState) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    target = output / RESUME_NAME
    partial = target.with_suffix(".partial")
    stored = {field.name: getattr(state, field.name) for field in fields(state)}
    stored["random_states"] = asdict(state.random_states)
    torch.save(stored, partial)
    os.replace(partial, target)
    return target


def load_state(output: Path) -> TrainingState:
    path = output / RESUME_NAME
    if not path.is_file():
        raise ResumeError(f"no {RESUME_NAME} in {output}: nothing to resume")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        stored["random_states"] = RandomStates(**stored["random_states"])
        return TrainingState(**stored)
    except (KeyError, TypeError, RuntimeError, EOFError) as error:
        raise ResumeError(f"{path} is not a training state: {error}") from error
