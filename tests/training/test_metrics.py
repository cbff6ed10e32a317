from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clothing.training.metrics import (
    accuracy,
    confusion_matrix,
    draw_confusion_matrix,
    format_report,
    per_class,
)

NAMES = ["hat", "pants", "shoes"]


def sample_matrix() -> np.ndarray:
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predictions = np.array([0, 0, 1, 1, 1, 2, 2, 0, 2])
    return confusion_matrix(labels, predictions, 3)


def test_confusion_matrix_counts_true_rows_predicted_columns() -> None:
    matrix = sample_matrix()
    assert matrix.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 3]]
    assert accuracy(matrix) == pytest.approx(7 / 9)


def test_precision_and_recall_per_class() -> None:
    rows = {row.name: row for row in per_class(sample_matrix(), NAMES)}
    assert rows["hat"].precision == pytest.approx(2 / 3)
    assert rows["hat"].recall == pytest.approx(2 / 3)
    assert rows["pants"].precision == pytest.approx(2 / 3)
    assert rows["pants"].recall == pytest.approx(1.0)
    assert rows["shoes"].precision == pytest.approx(1.0)
    assert rows["shoes"].recall == pytest.approx(3 / 4)
    assert rows["shoes"].support == 4


def test_never_predicted_class_has_zero_precision_not_an_error() -> None:
    matrix = confusion_matrix(np.array([0, 1]), np.array([0, 0]), 2)
    rows = per_class(matrix, ["a", "b"])
    assert rows[1].precision == 0.0
    assert rows[1].recall == 0.0
    assert rows[1].f1 == 0.0


def test_report_lists_accuracy_classes_and_matrix() -> None:
    report = format_report(sample_matrix(), NAMES)
    assert "top-1 accuracy: 0.7778 (7/9)" in report
    lines = report.splitlines()
    assert any(line.startswith("shoes") and "1.0000" in line for line in lines)
    assert lines[-1].split() == ["shoes", "1", "0", "3"]


def test_confusion_png_is_drawn(tmp_path: Path) -> None:
    path = tmp_path / "out" / "cm.png"
    draw_confusion_matrix(sample_matrix(), NAMES, path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        # The diagonal cell of the best-recalled class is the darkest.
        pixels = np.asarray(image.convert("RGB"))
    assert width > 200
    assert height > 200
    assert pixels.min() < 100
