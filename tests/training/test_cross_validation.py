"""Cross-validation: stratified folds, fold runs that let no held-out photo choose, fold files
and the summary computed from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clothing.cli import main
from clothing.training.cross_validation import (
    FoldResultsError,
    format_summary,
    read_results,
    write_fold_result,
)
from clothing.training.data import LabelledImages
from clothing.training.folds import fold_of_each, split_fold
from clothing.training.run import EpochRecord, Progress
from tests.training.conftest import TINY_CLASSES, TRAIN_PER_CLASS, VALIDATION_PER_CLASS


def labelled(counts: list[int]) -> LabelledImages:
    classes = tuple(f"class{label}" for label in range(len(counts)))
    paths, labels = [], []
    for label, count in enumerate(counts):
        paths += [Path(f"train/class{label}/{index}.jpg") for index in range(count)]
        labels += [label] * count
    return LabelledImages(classes=classes, paths=tuple(paths), labels=tuple(labels))


def test_folds_are_stratified_disjoint_and_fixed() -> None:
    images = labelled([23, 7, 5, 11, 40])
    assignment = fold_of_each(images, 5)
    assert (assignment == fold_of_each(images, 5)).all()
    sizes = [int((assignment == part).sum()) for part in range(5)]
    assert max(sizes) - min(sizes) <= 1
    for label in range(5):
        mine = assignment[[i for i, known in enumerate(images.labels) if known == label]]
        per_part = [int((mine == part).sum()) for part in range(5)]
        assert max(per_part) - min(per_part) <= 1, (label, per_part)
    held_out_paths: set[Path] = set()
    for fold in range(1, 6):
        train, held_out = split_fold(images, 5, fold)
        assert len(train) + len(held_out) == len(images)
        assert not set(train.paths) & set(held_out.paths)
        held_out_paths |= set(held_out.paths)
    assert held_out_paths == set(images.paths)


@pytest.mark.parametrize(
    ("counts", "folds", "fold", "message"),
    [
        ([10, 10], 1, 1, "at least 2 folds"),
        ([10, 10], 5, 0, "fold must be 1 to 5"),
        ([10, 10], 5, 6, "fold must be 1 to 5"),
        ([10, 3], 5, 1, "fewer than 5 folds"),
    ],
)
def test_fold_split_refuses_what_it_cannot_split(
    counts: list[int], folds: int, fold: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        split_fold(labelled(counts), folds, fold)


def test_a_run_that_keeps_its_last_epoch_lets_no_score_choose() -> None:
    network = torch.nn.Linear(2, 2)
    progress = Progress([], 0, 0.5, {}, keep_best=False)
    for epoch, accuracy in ((1, 0.9), (2, 0.4)):
        with torch.no_grad():
            network.weight.fill_(epoch)
        progress.add(EpochRecord(epoch, 0.0, 0.0, 0.0, accuracy, 0.0, 0.0), network)
    assert progress.best_epoch == 2
    assert float(progress.best_state["weight"][0, 0]) == 2.0


@pytest.mark.parametrize(
    "flags",
    [
        ["--folds=5"],
        ["--fold=2"],
        ["--folds=1", "--fold=1"],
        ["--folds=5", "--fold=6"],
        ["--folds=5", "--fold=1", "--keep=best"],
    ],
)
def test_train_refuses_bad_fold_flags(
    flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", f"--data={tmp_path}", *flags]) == 2
    assert "error: --fold" in capsys.readouterr().err


@pytest.mark.slow
def test_fold_run_holds_out_its_part_and_is_scored_on_it_alone(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, model_dir, results = tmp_path / "run", tmp_path / "model", tmp_path / "results"
    common = ["--image-size=64", "--batch-size=8", "--trainable-blocks=2", "--no-progress"]
    flags = ["--epochs=0", "--head-epochs=2", "--full-epochs=2", "--frozen-blocks=4"]
    assert main(["train", f"--data={tiny_dataset}", f"--output={run}", *common, *flags,
                 "--folds=3", "--fold=2"]) == 0  # fmt: skip
    history = json.loads((run / "history.json").read_text())
    per_class = TRAIN_PER_CLASS + VALIDATION_PER_CLASS
    assert history["training"]["train_images"] == len(TINY_CLASSES) * per_class * 2 // 3
    assert history["training"]["validation_images"] == len(TINY_CLASSES) * per_class // 3
    assert history["training"]["best_epoch"] == 2  # the last, whatever the scores
    assert (history["training"]["folds"], history["training"]["fold"]) == (3, 2)

    assert main(["export", f"--checkpoint={run / 'checkpoint.pt'}",
                 f"--model-dir={model_dir}"]) == 0  # fmt: skip
    evaluate = ["evaluate", f"--model={model_dir}", f"--data={tiny_dataset}", "--folds=3"]
    assert main([*evaluate, "--fold=1"]) == 2
    assert "may have seen these photos" in capsys.readouterr().err
    assert main([*evaluate, "--fold=2", f"--fold-output={results / 'fold-2.json'}"]) == 0
    saved = json.loads((results / "fold-2.json").read_text())
    photos = {photo["path"] for photo in saved["photos"]}
    assert len(photos) == len(TINY_CLASSES) * per_class // 3
    every = {path.relative_to(tiny_dataset).as_posix() for path in tiny_dataset.glob("*/*/*.jpg")}
    assert photos <= every
    assert len(every - photos) == len(TINY_CLASSES) * per_class * 2 // 3
    for photo in saved["photos"]:
        assert sum(photo["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    capsys.readouterr()
    assert main(["evaluate", f"--cross-validation={results}"]) == 0
    printed = capsys.readouterr().out
    assert "1 of 3 folds (incomplete" in printed
    assert f"top-1 accuracy: {saved['top1_accuracy']:.4f} ± 0.0000" in printed


def fold_file(fold: int, answers: list[tuple[int, int]], classes: list[str]) -> dict[str, object]:
    """A fold's file whose photos have (true class, predicted class) ``answers``."""
    photos = []
    for index, (label, predicted) in enumerate(answers):
        probabilities = [0.0] * len(classes)
        probabilities[predicted] = 1.0
        photos.append(
            {"path": f"{fold}-{index}.jpg", "label": label, "probabilities": probabilities}
        )
    # The stored figures are not trusted: the summary recomputes them from the answers.
    return {"folds": 2, "fold": fold, "classes": classes, "top1_accuracy": 1.0, "photos": photos}


def test_summary_is_computed_from_the_saved_answers(tmp_path: Path) -> None:
    classes = ["a", "b"]
    write_fold_result(
        fold_file(1, [(0, 0), (0, 0), (1, 1), (1, 0)], classes), tmp_path / "fold-1.json"
    )
    write_fold_result(
        fold_file(2, [(0, 1), (0, 0), (1, 1), (1, 0)], classes), tmp_path / "fold-2.json"
    )
    summary = read_results(tmp_path)
    assert summary.complete
    mean, spread = summary.accuracy()
    assert (mean, spread) == pytest.approx((0.625, 0.1767767))
    assert summary.recall("a") == pytest.approx((0.75, 0.3535534))
    assert summary.recall("b") == pytest.approx((0.5, 0.0))
    printed = format_summary(summary)
    assert "top-1 accuracy: 0.6250 ± 0.1768" in printed
    assert "2 of 2 folds\n" in printed


def test_summary_refuses_mixed_or_repeated_folds(tmp_path: Path) -> None:
    with pytest.raises(FoldResultsError, match="no fold"):
        read_results(tmp_path)
    write_fold_result(fold_file(1, [(0, 0), (1, 1)], ["a", "b"]), tmp_path / "fold-1.json")
    write_fold_result(fold_file(1, [(0, 0), (1, 1)], ["a", "b"]), tmp_path / "fold-1b.json")
    with pytest.raises(FoldResultsError, match="appears twice"):
        read_results(tmp_path)
    write_fold_result(fold_file(2, [(0, 0), (1, 1)], ["a", "c"]), tmp_path / "fold-1b.json")
    with pytest.raises(FoldResultsError, match="another split"):
        read_results(tmp_path)
