"""CPU latency of an ONNX model with ONNX Runtime, per batch size."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Latency:
    batch_size: int
    median_ms: float
    p90_ms: float
    runs: int


def measure(
    model_file: Path,
    *,
    height: int,
    width: int,
    batch_sizes: tuple[int, ...] = (1, 32),
    runs: int = 20,
    threads: int = 2,
) -> list[Latency]:
    """Median and p90 of ``runs`` calls per batch size, after two warm-up calls."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(model_file), options, providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    results = []
    for batch_size in batch_sizes:
        pixels = rng.integers(0, 256, (batch_size, height, width, 3), dtype=np.uint8)
        for _ in range(2):
            session.run(None, {input_name: pixels})
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            session.run(None, {input_name: pixels})
            timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        p90 = timings[min(len(timings) - 1, int(0.9 * len(timings)))]
        results.append(Latency(batch_size, statistics.median(timings), p90, runs))
    return results
