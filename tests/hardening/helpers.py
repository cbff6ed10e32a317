"""Helpers for the hardening tests: process stats, Predict calls and a gateway process."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from PIL import Image

from clothing import tensors
from clothing.benchmarks.processes import free_port, stop_process
from clothing.proto.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tests.fixtures import wait_ready

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


def images(count: int, *, seed: int = 1, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def predict_request(batch: np.ndarray, *, model: str = MODEL) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["image"].CopyFrom(tensors.from_numpy(batch))
    return request


def prediction_stub(channel: grpc.Channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]


def png_bytes(seed: int = 0, size: tuple[int, int] = (48, 40)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class GatewayProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def run_gateway(
    tf_serving_host: str, *extra: str, wait_for_ready: bool = True
) -> Iterator[GatewayProcess]:
    """``clothing gateway`` as a subprocess on a free loopback port; SIGTERM at exit."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "clothing.cli",
        "gateway",
        "--host=127.0.0.1",
        f"--port={port}",
        "--metrics-port=0",
        f"--tf-serving-host={tf_serving_host}",
        "--log-level=warning",
        *extra,
    ]
    with tempfile.TemporaryDirectory(prefix="gateway-log-") as log_dir:
        log_path = Path(log_dir) / "gateway.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        gateway = GatewayProcess(process, port, log_path)
        try:
            if wait_for_ready:
                wait_ready(f"{gateway.url}/readyz", process, 60.0)
            else:
                wait_ready(f"{gateway.url}/healthz", process, 60.0)
            yield gateway
        except BaseException:
            sys.stderr.write(gateway.log())
            raise
        finally:
            stop_process(process)


def wait_until(condition: object, timeout: float, interval: float = 0.05) -> float:
    """Poll a callable until it returns true; return the seconds it took."""
    assert callable(condition)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")
