"""Classification metrics and their text and PNG renderings (numpy + Pillow only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """``matrix[true, predicted]`` counts."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def accuracy(matrix: np.ndarray) -> float:
    total = int(matrix.sum())
    return float(np.trace(matrix)) / total if total else 0.0


def per_class(matrix: np.ndarray, names: list[str]) -> list[ClassMetrics]:
    """Precision and recall per class; 0 where a class was never predicted or never seen."""
    rows = []
    for index, name in enumerate(names):
        hits = int(matrix[index, index])
        predicted = int(matrix[:, index].sum())
        actual = int(matrix[index, :].sum())
        precision = hits / predicted if predicted else 0.0
        recall = hits / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(ClassMetrics(name, precision, recall, f1, actual))
    return rows


def format_report(matrix: np.ndarray, names: list[str]) -> str:
    """Per-class table, then the confusion matrix (rows true, columns predicted)."""
    width = max(len(name) for name in [*names, "class"])
    lines = [f"top-1 accuracy: {accuracy(matrix):.4f} ({np.trace(matrix)}/{matrix.sum()})", ""]
    lines.append(f"{'class':<{width}}  precision  recall     f1  support")
    for row in per_class(matrix, names):
        lines.append(
            f"{row.name:<{width}}  {row.precision:9.4f}  {row.recall:6.4f}"
            f"  {row.f1:5.3f}  {row.support:7d}"
        )
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
    cell = max(4, len(str(matrix.max())) + 1)
    short = [name[:cell] for name in names]
    lines.append(" " * width + "".join(f"{name:>{cell + 1}}" for name in short))
    for name, row in zip(names, matrix, strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"{int(value):>{cell + 1}d}" for value in row))
    return "\n".join(lines) + "\n"


def draw_confusion_matrix(matrix: np.ndarray, names: list[str], path: Path) -> None:
    """A PNG heat map: cell shade is the row-normalised share, text is the count."""
    font = ImageFont.load_default()
    cell, margin_left, margin_top = 44, 110, 110
    size = len(names)
    image = Image.new(
        "RGB", (margin_left + cell * size + 20, margin_top + cell * size + 40), "white"
    )
    draw = ImageDraw.Draw(image)
    row_totals = np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    shares = matrix / row_totals
    for row in range(size):
        for column in range(size):
            share = float(shares[row, column])
            # White (0 %) to a dark blue (100 %).
            colour = tuple(int(255 - share * (255 - target)) for target in (8, 48, 107))
            left, top = margin_left + column * cell, margin_top + row * cell
            draw.rectangle([left, top, left + cell, top + cell], fill=colour, outline="#cccccc")
            text = str(int(matrix[row, column]))
            text_colour = "white" if share > 0.5 else "black"
            box = draw.textbbox((0, 0), text, font=font)
            draw.text(
                (left + (cell - (box[2] - box[0])) / 2, top + (cell - (box[3] - box[1])) / 2),
                text,
                fill=text_colour,
                font=font,
            )
    for index, name in enumerate(names):
        draw.text((8, margin_top + index * cell + cell / 2 - 6), name, fill="black", font=font)
        label = Image.new("RGBA", (margin_top - 10, 16), (255, 255, 255, 0))
        ImageDraw.Draw(label).text((0, 2), name, fill="black", font=font)
        rotated = label.rotate(90, expand=True)
        image.paste(rotated, (margin_left + index * cell + cell // 2 - 8, 4), rotated)
    draw.text(
        (margin_left, margin_top + size * cell + 12),
        f"rows: true class, columns: predicted class; accuracy {accuracy(matrix):.4f}",
        fill="black",
        font=font,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)
