"""Two copies of one model (e.g. int8 against float32) in process, in alternating blocks.

Tensor in, probabilities out, no server: what each copy's ONNX Runtime session does
on this CPU with a given number of intra-op threads and batch size. The machine's
speed drifts and other work shares its cores, so each cell (threads x batch size)
runs ``rounds`` blocks per copy in alternating order (A B, B A, ...) and reports
the pooled images/s of each, the pooled ratio, and the ratio of every round on its
own (with their median, which a burst of other work in one block moves least).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clothing.benchmarks.level1 import sample_pixels
from clothing.serving_layout import ModelMetadata, read_metadata


@dataclass(frozen=True)
class PrecisionCell:
    """Images/s of the baseline and the candidate per round, for one threads x batch."""

    threads: int
    batch_size: int
    baseline: tuple[float, ...]
    candidate: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """Candidate ÷ baseline over all rounds (blocks of equal length: mean of rates)."""
        return float(np.mean(self.candidate) / np.mean(self.baseline))

    @property
    def round_ratios(self) -> tuple[float, ...]:
        return tuple(c / b for b, c in zip(self.baseline, self.candidate, strict=True))

    @property
    def median_round_ratio(self) -> float:
        """The middle round's ratio: what a burst of other work in one block moves least."""
        return float(np.median(self.round_ratios))

    def to_json(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "batch_size": self.batch_size,
            "baseline_images_per_s": round(float(np.mean(self.baseline)), 2),
            "candidate_images_per_s": round(float(np.mean(self.candidate)), 2),
            "ratio": round(self.ratio, 3),
            "median_round_ratio": round(self.median_round_ratio, 3),
            "round_ratios": [round(value, 3) for value in self.round_ratios],
        }


def _session(info: ModelMetadata, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(info.model_file), options, providers=["CPUExecutionProvider"]
    )


def _block(session: Any, info: ModelMetadata, feed: np.ndarray, seconds: float) -> float:
    """Images/s of back-to-back runs for about ``seconds`` (at least two runs)."""
    inputs = {info.input_name: feed}
    runs = 0
    started = time.perf_counter()
    while runs < 2 or time.perf_counter() - started < seconds:
        session.run([info.output_name], inputs)
        runs += 1
    return runs * len(feed) / (time.perf_counter() - started)


def compare(
    baseline: Path,
    candidate: Path,
    *,
    threads: Sequence[int] = (1, 2),
    batch_sizes: Sequence[int] = (8, 1),
    rounds: int = 4,
    seconds: float = 1.0,
) -> list[PrecisionCell]:
    """Every threads x batch-size cell, each copy measured in ``rounds`` alternating blocks."""
    copies = (read_metadata(baseline), read_metadata(candidate))
    if (copies[0].height, copies[0].width) != (copies[1].height, copies[1].width):
        raise ValueError("the two models take different image sizes")
    cells = []
    for thread_count in threads:
        sessions = [_session(info, thread_count) for info in copies]
        for batch in batch_sizes:
            feeds = [info.to_model_input(sample_pixels(info, batch, seed=batch)) for info in copies]
            for session, info, feed in zip(sessions, copies, feeds, strict=True):
                _block(session, info, feed, seconds=0.0)  # warm-up
            rates: tuple[list[float], list[float]] = ([], [])
            for block in range(rounds):
                order = (0, 1) if block % 2 == 0 else (1, 0)
                for which in order:
                    rates[which].append(
                        _block(sessions[which], copies[which], feeds[which], seconds)
                    )
            cells.append(PrecisionCell(thread_count, batch, tuple(rates[0]), tuple(rates[1])))
        del sessions
    return cells


def format_table(cells: Sequence[PrecisionCell], names: tuple[str, str]) -> str:
    """A markdown table: images/s of each copy, the pooled ratio and its rounds' range."""
    baseline, candidate = names
    lines = [
        f"| threads | batch | {baseline} images/s | {candidate} images/s "
        f"| {candidate} ÷ {baseline} | median round | rounds |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        low, high = min(cell.round_ratios), max(cell.round_ratios)
        lines.append(
            f"| {cell.threads} | {cell.batch_size} | {np.mean(cell.baseline):.1f} "
            f"| {np.mean(cell.candidate):.1f} | {cell.ratio:.2f} "
            f"| {cell.median_round_ratio:.2f} | {low:.2f}–{high:.2f} |"
        )
    return "\n".join(lines) + "\n"
