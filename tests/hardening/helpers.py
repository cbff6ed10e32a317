"""Helpers for the hardening tests: process stats, Predict calls and a gateway process."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from clothing import tensors
from clothing.proto.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

MODEL = "clothing-model"


@dataclass(frozen=True)
class ProcessStats:
    """What /proc says about one process: resident memory, open files, threads."""

    rss_kib: int
    fds: int
    threads: int


def process_stats(pid: int) -> ProcessStats:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    return ProcessStats(fields["VmRSS"], len(os.listdir(f"/proc/{pid}/fd")), fields["Threads"])


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM (peak resident size) afresh from the current RSS (Linux clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_kib(pid: int) -> int:
    """VmHWM: the most resident memory the process has held since start or the last reset."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (the gateway's decode workers sit under it)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found += process_tree(int(child))
    return found


def tree_rss_kib(pid: int) -> int:
    return sum(process_stats(each).rss_kib for each in process_tree(pid))


def reset_tree_peak_rss(pid: int) -> None:
    for each in process_tree(pid):
        reset_peak_rss(each)


def tree_peak_rss_kib(pid: int) -> int:
    """The processes' peaks added up: at least the peak they held together."""
    return sum(peak_rss_kib(each) for each in process_tree(pid))


def images(count: int, *, seed: int = 1, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def predict_request(batch: np.ndarray, *, model: str = MODEL) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["image"].CopyFrom(tensors.from_numpy(batch))
    return request


def prediction_stub(channel: grpc.Channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def wait_until(condition: object, timeout: float, interval: float = 0.05) -> float:
    """Poll a callable until it returns true; return the seconds it took."""
    assert callable(condition)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")
