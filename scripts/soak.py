"""Soak test: gateway + model server as real processes under steady load on loopback.

Starts ``clothing model-server`` and ``clothing gateway`` on free 127.0.0.1
ports, sends ``POST /predict`` (base64 PNGs) from ``--concurrency`` clients for
``--duration`` seconds, and samples /proc/PID/status and /proc/PID/fd of both
processes. After a warm-up the resident memory of each process must grow by
less than ``--max-rss-growth`` and its open file descriptors and threads must
not grow; no request may fail. Both processes are then stopped with SIGTERM
and must exit 0.

    python scripts/soak.py --duration 300            # make soak
    python scripts/soak.py --duration 40 --json out.json

Exit code 0 when every check passes, 1 otherwise. Only loopback is used.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from clothing.processes import free_port, start_logged, stop_process, wait_ready

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = ROOT / "models" / "clothing-model"
# Descriptors and threads may differ by this much between samples without
# counting as growth: a connection being opened or a pool worker in flight.
FD_SLACK = 4
THREAD_SLACK = 2


@dataclass
class Sample:
    seconds: float
    rss_kib: int
    fds: int
    threads: int


@dataclass
class ProcessReport:
    name: str
    pid: int
    baseline: Sample | None = None
    final: Sample | None = None
    peak_rss_kib: int = 0
    exit_code: int | None = None
    samples: list[Sample] = field(default_factory=list)

    def problems(self, max_rss_growth: float) -> list[str]:
        if self.baseline is None or self.final is None:
            return [f"{self.name}: no samples after warm-up"]
        found = []
        growth = (self.final.rss_kib - self.baseline.rss_kib) / self.baseline.rss_kib
        if growth >= max_rss_growth:
            found.append(f"{self.name}: RSS grew {growth:.1%} after warm-up")
        if self.final.fds > self.baseline.fds + FD_SLACK:
            found.append(f"{self.name}: fds {self.baseline.fds} -> {self.final.fds}")
        if self.final.threads > self.baseline.threads + THREAD_SLACK:
            found.append(f"{self.name}: threads {self.baseline.threads} -> {self.final.threads}")
        if self.exit_code != 0:
            found.append(f"{self.name}: exit code {self.exit_code} after SIGTERM")
        return found


def read_stats(pid: int, seconds: float) -> Sample:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            values[key] = int(value.split()[0])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return Sample(round(seconds, 2), values["VmRSS"], fds, values["Threads"])


def model_base_path(requested: str | None, scratch: Path) -> Path:
    if requested:
        return Path(requested)
    if (BUNDLED_MODEL / "1" / "model.onnx").is_file():
        return BUNDLED_MODEL
    # No bundled model here: the small real ONNX model the tests use.
    sys.path.insert(0, str(ROOT))
    from tests.fixtures import build_test_model

    base = scratch / "clothing-model"
    build_test_model(base / "1")
    return base


def test_images(count: int) -> list[str]:
    encoded = []
    for seed in range(count):
        pixels = np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        encoded.append(base64.b64encode(buffer.getvalue()).decode())
    return encoded


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


async def client_loop(
    client: httpx.AsyncClient, url: str, bodies: list[str], until: float, result: LoadResult
) -> None:
    index = 0
    while time.monotonic() < until:
        body = {"image_b64": bodies[index % len(bodies)]}
        index += 1
        started = time.monotonic()
        try:
            answer = await client.post(url, json=body, timeout=30.0)
            status = str(answer.status_code)
            ok = answer.status_code == 200 and "label" in answer.json()
        except (httpx.HTTPError, ValueError) as error:
            status, ok = type(error).__name__, False
        result.sent += 1
        result.statuses[status] += 1
        if ok:
            result.latencies.append(time.monotonic() - started)
        else:
            result.failed += 1


async def sampler(
    reports: list[ProcessReport], started: float, warmup: float, until: float, interval: float
) -> None:
    while True:
        now = time.monotonic()
        for report in reports:
            sample = read_stats(report.pid, now - started)
            report.samples.append(sample)
            report.peak_rss_kib = max(report.peak_rss_kib, sample.rss_kib)
            if report.baseline is None and now - started >= warmup:
                report.baseline = sample
            report.final = sample
        if now >= until:
            return
        await asyncio.sleep(min(interval, max(0.0, until - now)))


async def drive(
    gateway_url: str, reports: list[ProcessReport], args: argparse.Namespace
) -> LoadResult:
    bodies = test_images(8)
    result = LoadResult()
    started = time.monotonic()
    until = started + args.duration
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    async with httpx.AsyncClient(limits=limits) as client:
        await asyncio.gather(
            sampler(reports, started, args.warmup, until, args.sample_interval),
            *(
                client_loop(client, f"{gateway_url}/predict", bodies, until, result)
                for _ in range(args.concurrency)
            ),
        )
    return result


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        base = model_base_path(args.model_base_path, Path(scratch))
        grpc_port, rest_port, gateway_port = free_port(), free_port(), free_port()
        python = [sys.executable, "-m", "clothing.cli"]
        server_log = Path(scratch) / "model-server.log"
        gateway_log = Path(scratch) / "gateway.log"
        server = start_logged(
            [
                *python,
                "model-server",
                "--host=127.0.0.1",
                f"--port={grpc_port}",
                f"--rest_api_port={rest_port}",
                "--model_name=clothing-model",
                f"--model_base_path={base}",
                *args.server_arg,
            ],
            server_log,
        )
        gateway = start_logged(
            [
                *python,
                "gateway",
                "--host=127.0.0.1",
                f"--port={gateway_port}",
                "--metrics-port=0",
                f"--tf-serving-host=127.0.0.1:{grpc_port}",
                "--log-level=warning",
                # All the load comes from one client: no per-client rate limit.
                "--rate-limit=0",
            ],
            gateway_log,
        )
        reports = [ProcessReport("model-server", server.pid), ProcessReport("gateway", gateway.pid)]
        try:
            wait_ready(f"http://127.0.0.1:{rest_port}/readyz", server, 60.0)
            wait_ready(f"http://127.0.0.1:{gateway_port}/readyz", gateway, 60.0)
            started = time.monotonic()
            load = asyncio.run(drive(f"http://127.0.0.1:{gateway_port}", reports, args))
            elapsed = time.monotonic() - started
        finally:
            reports[1].exit_code = stop_process(gateway)
            reports[0].exit_code = stop_process(server)
        problems = [p for report in reports for p in report.problems(args.max_rss_growth)]
        if load.failed:
            problems.append(f"{load.failed} of {load.sent} requests failed: {dict(load.statuses)}")
        if problems and args.verbose:
            sys.stderr.write(server_log.read_text(errors="replace")[-4000:])
            sys.stderr.write(gateway_log.read_text(errors="replace")[-4000:])
    return {
        "duration_s": round(elapsed, 1),
        "concurrency": args.concurrency,
        "warmup_s": args.warmup,
        "sent": load.sent,
        "failed": load.failed,
        "statuses": dict(load.statuses),
        "throughput_rps": round(load.sent / elapsed, 1) if elapsed else 0.0,
        "latency_ms": {
            "p50": round(percentile(load.latencies, 0.5) * 1000, 1),
            "p99": round(percentile(load.latencies, 0.99) * 1000, 1),
        },
        "processes": [
            {
                "name": r.name,
                "baseline": asdict(r.baseline) if r.baseline else None,
                "final": asdict(r.final) if r.final else None,
                "peak_rss_kib": r.peak_rss_kib,
                "exit_code": r.exit_code,
                "first": asdict(r.samples[0]) if r.samples else None,
            }
            for r in reports
        ],
        "problems": problems,
        "passed": not problems,
    }


def describe(report: dict[str, Any]) -> str:
    lines = [
        f"soak: {report['duration_s']} s at concurrency {report['concurrency']} "
        f"(warm-up {report['warmup_s']} s): {report['sent']} requests, "
        f"{report['failed']} failed, {report['throughput_rps']} req/s, "
        f"p50 {report['latency_ms']['p50']} ms, p99 {report['latency_ms']['p99']} ms",
    ]
    for proc in report["processes"]:
        base, final = proc["baseline"], proc["final"]
        if base and final:
            growth = (final["rss_kib"] - base["rss_kib"]) / base["rss_kib"]
            lines.append(
                f"  {proc['name']}: RSS {base['rss_kib']} -> {final['rss_kib']} KiB "
                f"({growth:+.1%}), fds {base['fds']} -> {final['fds']}, "
                f"threads {base['threads']} -> {final['threads']}, exit {proc['exit_code']}"
            )
    lines += [f"  PROBLEM: {problem}" for problem in report["problems"]]
    lines.append("  PASSED" if report["passed"] else "  FAILED")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds before the baseline sample"
    )
    parser.add_argument(
        "--sample-interval", type=float, default=1.0, help="seconds between samples"
    )
    parser.add_argument(
        "--max-rss-growth", type=float, default=0.10, help="allowed RSS growth after warm-up"
    )
    parser.add_argument("--model-base-path", help="model repository (default: bundled or test)")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra model-server flag (repeatable)"
    )
    parser.add_argument("--json", help="also write the report to this file")
    parser.add_argument("--verbose", action="store_true", help="print logs when a check fails")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1:
        parser.error("--duration and --concurrency must be positive")
    if args.warmup is None:
        args.warmup = min(60.0, max(5.0, 0.25 * args.duration))
    if args.warmup >= args.duration:
        parser.error("--warmup must be shorter than --duration")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(describe(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
