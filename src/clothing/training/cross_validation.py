"""Cross-validated accuracy: one result file per held-out fold, and their summary.

A fold's file records, for every photo the fold held out, its path (relative
to the data folder), its true class and the model's probabilities, with the
figures computed from them. The summary reads only these files: the
cross-validated estimate is printed again without any model or photo, and
other analyses (ensembles, distillation targets) start from the same numbers.

Across folds the spread is the sample standard deviation (n - 1): five folds
give a rough idea of how much the figure moves with the photos, not a
confidence interval.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clothing.serving_layout import METADATA_FILE
from clothing.training.data import LabelledImages
from clothing.training.evaluate import Evaluation
from clothing.training.folds import FOLD_SEED
from clothing.training.metrics import confusion_matrix, per_class

FOLD_FILE = "fold-{fold}.json"
DECIMALS = 5


def fold_result(
    evaluation: Evaluation,
    images: LabelledImages,
    *,
    data: Path,
    folds: int,
    fold: int,
) -> dict[str, Any]:
    """What a fold's file holds: the model, the split, the figures and every photo's answer."""
    training = training_metadata(evaluation.model.model_file)
    return {
        "folds": folds,
        "fold": fold,
        "fold_seed": FOLD_SEED,
        "model": {
            "command": training.get("command"),
            "data_sha256": training.get("data_sha256"),
            "best_epoch": training.get("best_epoch"),
            "image_size": evaluation.model.height,
        },
        "classes": evaluation.classes,
        "top1_accuracy": evaluation.accuracy,
        "recall": {row.name: row.recall for row in evaluation.per_class},
        "photos": [
            {
                "path": path.relative_to(data).as_posix(),
                "label": int(label),
                "probabilities": [round(float(p), DECIMALS) for p in row],
            }
            for path, label, row in zip(
                images.paths, evaluation.labels, evaluation.probabilities, strict=True
            )
        ],
    }


def training_metadata(model_file: Path) -> dict[str, Any]:
    """The ``training`` part of the model's metadata.json (empty when it has none)."""
    metadata_file = model_file.parent / METADATA_FILE
    metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
    training: dict[str, Any] = metadata.get("training", {})
    return training


def check_held_out(model_file: Path, folds: int, fold: int, data_hash: str) -> None:
    """Refuse to score a model on photos it may have trained on: only the fold run that held
    out exactly this part of exactly these photos (``data_hash``) is scored on it."""
    training = training_metadata(model_file)
    held_out = (training.get("folds"), training.get("fold"), training.get("fold_seed"))
    if held_out != (folds, fold, FOLD_SEED):
        raise FoldResultsError(
            f"{model_file} was not trained with fold {fold} of {folds} held out"
            " (its metadata.json names no such fold): it may have seen these photos"
        )
    if training.get("data_sha256") != data_hash:
        raise FoldResultsError(f"{model_file} was trained on other photos than these")


def write_fold_result(result: dict[str, Any], path: Path) -> Path:
    """One line per photo, so that the file reads (and diffs) photo by photo."""
    photos = result["photos"]
    head = json.dumps({**result, "photos": []}, indent=1)[: -len("[]\n}")]
    lines = ",\n  ".join(json.dumps(photo) for photo in photos)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}[\n  {lines}\n ]\n}}\n")
    return path


@dataclass(frozen=True)
class FoldScores:
    fold: int
    images: int
    accuracy: float
    recall: dict[str, float]


@dataclass(frozen=True)
class CrossValidation:
    classes: list[str]
    folds: list[FoldScores]
    expected: int  # how many folds the split has

    @property
    def complete(self) -> bool:
        return len(self.folds) == self.expected

    def accuracy(self) -> tuple[float, float]:
        """Mean and sample standard deviation of top-1 over the folds."""
        return _mean_spread([fold.accuracy for fold in self.folds])

    def recall(self, name: str) -> tuple[float, float]:
        return _mean_spread([fold.recall[name] for fold in self.folds])

    def balanced_recall(self) -> tuple[float, float]:
        """Each fold's mean recall over the classes, then mean and spread over the folds."""
        return _mean_spread([statistics.fmean(fold.recall.values()) for fold in self.folds])


def _mean_spread(values: list[float]) -> tuple[float, float]:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), spread


class FoldResultsError(ValueError):
    """The folder holds no consistent set of fold results."""


def read_results(directory: Path) -> CrossValidation:
    """Every ``fold-*.json`` in ``directory``; figures are recomputed from the photos' answers."""
    files = sorted(directory.glob("fold-*.json"))
    if not files:
        raise FoldResultsError(f"no fold-*.json in {directory}")
    results = [json.loads(path.read_text()) for path in files]
    classes, expected = results[0]["classes"], results[0]["folds"]
    seen: set[int] = set()
    scores = []
    for path, result in zip(files, results, strict=True):
        if result["classes"] != classes or result["folds"] != expected:
            raise FoldResultsError(f"{path} belongs to another split or class list")
        if result["fold"] in seen:
            raise FoldResultsError(f"fold {result['fold']} appears twice in {directory}")
        seen.add(result["fold"])
        scores.append(_scores(result, classes))
    return CrossValidation(classes, sorted(scores, key=lambda s: s.fold), expected)


def _scores(result: dict[str, Any], classes: list[str]) -> FoldScores:
    photos = result["photos"]
    labels = np.array([photo["label"] for photo in photos])
    predicted = np.array([np.argmax(photo["probabilities"]) for photo in photos])
    matrix = confusion_matrix(labels, predicted, len(classes))
    rows = per_class(matrix, classes)
    return FoldScores(
        fold=result["fold"],
        images=len(photos),
        accuracy=float(np.trace(matrix)) / len(photos),
        recall={row.name: row.recall for row in rows},
    )


def format_summary(cv: CrossValidation) -> str:
    """Top-1 and each class's recall as mean ± standard deviation over the folds."""
    mean, spread = cv.accuracy()
    done = f"{len(cv.folds)} of {cv.expected} folds"
    lines = [
        f"cross-validation: {done}"
        + ("" if cv.complete else " (incomplete: not yet an estimate of the whole recipe)"),
        "fold  images  top-1",
    ]
    lines += [f"{fold.fold:>4}  {fold.images:>6}  {fold.accuracy:.4f}" for fold in cv.folds]
    lines.append(f"top-1 accuracy: {mean:.4f} ± {spread:.4f}")
    balanced, balanced_spread = cv.balanced_recall()
    lines.append(f"class-balanced recall: {balanced:.4f} ± {balanced_spread:.4f}")
    width = max(len(name) for name in cv.classes)
    lines.append(f"{'class':<{width}}  recall")
    for name in cv.classes:
        recall, recall_spread = cv.recall(name)
        lines.append(f"{name:<{width}}  {recall:.4f} ± {recall_spread:.4f}")
    return "\n".join(lines) + "\n"
