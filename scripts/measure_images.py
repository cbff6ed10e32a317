"""Figures for docs/deploy.md from a real build: image sizes, start-to-ready, memory.

Builds both images from their Dockerfiles with the classic builder, then prints
for each: its size and what it adds over the Python base it is built on (layer
by layer), seconds from ``docker start`` to a ready answer (median of
``--starts``), and the resident memory of the server process (PID 1) when idle
and after ``--load-seconds`` of requests through the gateway. Targets: the model
server ready within 3 s; the gateway image adds at most 160 MB, the model
server's at most 250 MB.

    python scripts/measure_images.py                  # about 3 minutes with a warm cache
    python scripts/measure_images.py --markdown out.md

Needs a Docker engine; everything it creates is removed at the end. Only
loopback is used.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from clothing.processes import poll_until_ok

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = {
    "model-server": ROOT / "deploy" / "docker" / "model-server.Dockerfile",
    "gateway": ROOT / "deploy" / "docker" / "gateway.Dockerfile",
}
READY_PATHS = {"model-server": (8501, "/readyz"), "gateway": (9696, "/readyz")}
MB = 1_000_000
TARGET_READY_SECONDS = 3.0
TARGET_ADDED_MB = {"gateway": 160, "model-server": 250}
RUN_ID = uuid.uuid4().hex[:8]


def docker(*args: str, timeout: float = 600) -> str:
    result = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def base_image(dockerfile: Path) -> str:
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{dockerfile}: no PYTHON_IMAGE default")
    return match.group(1)


@dataclass
class Figures:
    name: str
    base: str
    size_mb: float = 0.0
    added_mb: float = 0.0
    layers: list[tuple[str, float]] = field(default_factory=list)
    ready_seconds: list[float] = field(default_factory=list)
    rss_idle_mb: float = 0.0
    rss_loaded_mb: float = 0.0


def measure_size(name: str, tag: str) -> Figures:
    base = base_image(DOCKERFILES[name])
    figures = Figures(name, base)
    figures.size_mb = int(docker("image", "inspect", "-f", "{{.Size}}", tag)) / MB
    figures.added_mb = (
        figures.size_mb - int(docker("image", "inspect", "-f", "{{.Size}}", base)) / MB
    )
    base_layers = len(docker("history", "-q", base).splitlines())
    history = docker("history", "--no-trunc", "--format", "{{json .}}", tag).splitlines()
    for line in history[: len(history) - base_layers]:
        entry = json.loads(line)
        size = _size_mb(entry["Size"])
        if size >= 0.1:
            figures.layers.append((_step(entry["CreatedBy"]), size))
    return figures


def _step(created_by: str) -> str:
    """A layer's Dockerfile step, short: ``COPY … /opt/venv`` or the command it ran."""
    step = re.sub(r"^/bin/sh -c (#\(nop\) )?", "", created_by).strip()
    copied = re.fullmatch(r"COPY \S+ in (\S+)\s*", step)
    if copied:
        return f"COPY … {copied.group(1)}"
    return step if len(step) <= 70 else step[:69] + "…"


def _size_mb(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)\s*([kMG]?B)", text)
    if match is None:
        return 0.0
    scale = {"B": 1e-6, "kB": 1e-3, "MB": 1.0, "GB": 1e3}[match.group(2)]
    return float(match.group(1)) * scale


def wait_ready(url: str, timeout: float = 120) -> float:
    """Seconds until ``url`` answered 200."""
    started = time.monotonic()
    failure = poll_until_ok(url, None, timeout=timeout, interval=0.02)
    if failure is not None:
        raise TimeoutError(f"{url}: {failure}")
    return time.monotonic() - started


def published(container: str, port: int) -> str:
    host_port = docker("port", container, f"{port}/tcp").splitlines()[0].rsplit(":", 1)[1]
    return f"http://127.0.0.1:{host_port}"


def rss_mb(container: str) -> float:
    """Resident memory of the container's PID 1, the server itself."""
    status = docker("exec", container, "cat", "/proc/1/status")
    (line,) = [line for line in status.splitlines() if line.startswith("VmRSS:")]
    return int(line.split()[1]) * 1024 / MB


def time_to_ready(name: str, container: str) -> float:
    """Seconds from ``docker start`` of a created container to its first ready answer."""
    port, path = READY_PATHS[name]
    started = time.monotonic()
    docker("start", container)
    wait_ready(published(container, port) + path)
    return time.monotonic() - started


class Load:
    """Clients posting one photo to the gateway without pause."""

    def __init__(self, url: str, clients: int) -> None:
        buffer = io.BytesIO()
        pixels = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        self.body = {"image_b64": base64.b64encode(buffer.getvalue()).decode()}
        self.url, self.clients, self.done, self.failed = url, clients, 0, 0
        self.stop = threading.Event()

    def run_for(self, seconds: float) -> None:
        threads = [threading.Thread(target=self._client) for _ in range(self.clients)]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        self.stop.set()
        for thread in threads:
            thread.join()

    def _client(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                ok = client.post(f"{self.url}/predict", json=self.body).status_code == 200
                self.done += ok
                self.failed += not ok


def measure_running(
    tags: dict[str, str], figures: dict[str, Figures], starts: int, load_seconds: float
) -> tuple[int, int]:
    network = f"measure-{RUN_ID}"
    docker("network", "create", network)
    created: list[str] = []

    def create(name: str, suffix: str, *extra: str) -> str:
        port = READY_PATHS[name][0]
        cid = docker(
            "create", "--name", f"measure-{RUN_ID}-{name}-{suffix}", "--network", network,
            "-p", f"127.0.0.1::{port}", *extra, tags[name],
        )  # fmt: skip
        created.append(cid)
        return cid

    try:
        server = ""
        for attempt in range(starts):
            server = create("model-server", str(attempt), "--network-alias", "model-server")
            figures["model-server"].ready_seconds.append(time_to_ready("model-server", server))
            if attempt < starts - 1:
                docker("rm", "--force", server)
        for attempt in range(starts):
            # The load below comes from one client: no per-client rate limit.
            gateway = create(
                "gateway",
                str(attempt),
                "-e",
                "TF_SERVING_HOST=model-server:8500",
                "-e",
                "GATEWAY_RATE_LIMIT=0",
            )
            figures["gateway"].ready_seconds.append(time_to_ready("gateway", gateway))
            if attempt < starts - 1:
                docker("rm", "--force", gateway)
        time.sleep(5)
        figures["model-server"].rss_idle_mb = rss_mb(server)
        figures["gateway"].rss_idle_mb = rss_mb(gateway)
        load = Load(published(gateway, 9696), clients=4)
        load.run_for(load_seconds)
        figures["model-server"].rss_loaded_mb = rss_mb(server)
        figures["gateway"].rss_loaded_mb = rss_mb(gateway)
        return load.done, load.failed
    finally:
        for cid in created:
            subprocess.run(["docker", "rm", "--force", cid], capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def report(figures: dict[str, Figures], load: tuple[int, int], load_seconds: float) -> str:
    lines = [
        "| image | size | base | adds | target (adds) | start to ready, median (runs) "
        "| target (ready) | RSS idle | RSS after load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, fig in figures.items():
        ready = statistics.median(fig.ready_seconds)
        runs = ", ".join(f"{s:.2f}" for s in fig.ready_seconds)
        added_target = TARGET_ADDED_MB[name]
        ready_target = (
            f"≤ {TARGET_READY_SECONDS:.0f} s: {verdict(ready <= TARGET_READY_SECONDS)}"
            if name == "model-server"
            else "-"
        )
        lines.append(
            f"| {name} | {fig.size_mb:.0f} MB | {fig.base} | {fig.added_mb:.0f} MB "
            f"| ≤ {added_target} MB: {verdict(fig.added_mb <= added_target)} "
            f"| {ready:.2f} s ({runs}) | {ready_target} "
            f"| {fig.rss_idle_mb:.0f} MB | {fig.rss_loaded_mb:.0f} MB |"
        )
    done, failed = load
    lines += [
        "",
        f"Load: {load_seconds:.0f} s of 4 clients posting a 640x480 JPEG through the gateway: "
        f"{done} answered ({done / load_seconds:.1f}/s), {failed} failed.",
        "",
        "What each image adds over its base, layer by layer:",
        "",
        "| image | layer | MB |",
        "| --- | --- | --- |",
    ]
    for name, fig in figures.items():
        for step, size in fig.layers:
            lines.append(f"| {name} | `{step.replace('|', '/')}` | {size:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--starts", type=int, default=3, help="start-to-ready runs per image")
    parser.add_argument("--load-seconds", type=float, default=60.0, help="load before RSS")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    args = parser.parse_args(argv)
    tags: dict[str, str] = {}
    try:
        for name, dockerfile in DOCKERFILES.items():
            tag = f"measure-{RUN_ID}/{name}:measure"
            print(f"building {name} ...", file=sys.stderr)
            docker("build", "-q", "-f", str(dockerfile), "-t", tag, str(ROOT), timeout=1800)
            tags[name] = tag
        figures = {name: measure_size(name, tag) for name, tag in tags.items()}
        load = measure_running(tags, figures, args.starts, args.load_seconds)
    finally:
        for tag in tags.values():
            subprocess.run(["docker", "rmi", "--force", tag], capture_output=True, check=False)
    text = report(figures, load, args.load_seconds)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    met = (
        all(fig.added_mb <= TARGET_ADDED_MB[name] for name, fig in figures.items())
        and statistics.median(figures["model-server"].ready_seconds) <= TARGET_READY_SECONDS
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
