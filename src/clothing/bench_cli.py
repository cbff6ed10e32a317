"""Benchmark the stack against its alternatives, on loopback, in one run.

Level 1 (tensor in, probabilities out): in-process ONNX Runtime at its best batch
size (the ceiling) against the model server over gRPC, batching off and on.
Level 2 (photo in, class JSON out): gateway + model server as shipped (and without
batching) against the baseline app (bench/baseline_app.py), a LitServe app
(bench/litserve_app.py) and the photo-in ceiling (the same work in this process),
with dataset-size and phone-size photos sent as base64 and as URLs.

Every system is started as a subprocess on 127.0.0.1 and stopped at the end.
Results go to OUTPUT/<timestamp>.json, .md and .png. Run from the repository root.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from clothing.benchmarks.devices import DEVICES
from clothing.serving_layout import PRECISION_BASE_PATHS

# --smoke: enough to start, drive and stop every system, nothing more.
SMOKE_REQUESTS = 6
SMOKE_CONCURRENCY = (1, 4)
SMOKE_PHOTOS = 3


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError("expected one or more positive integers")
    return values


def _name_list(text: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected one or more names")
    return values


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, help="requests per measurement (default 200)")
    parser.add_argument(
        "--duration",
        type=float,
        help="seconds per measurement (instead of or as well as --requests)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="alternating blocks per system in each cell (level 1: server and in-process "
        "ceiling; level 2: the three systems) (default 3; --smoke 2)",
    )
    parser.add_argument(
        "--concurrency", type=_int_list, help="comma list of concurrencies (default 1,4,16,64)"
    )
    parser.add_argument(
        "--levels", type=_int_list, default=(1, 2), help="levels to run: 1, 2 or 1,2"
    )
    parser.add_argument(
        "--sizes", type=_name_list, default=("dataset", "phone"), help="photo sizes: dataset,phone"
    )
    parser.add_argument(
        "--payloads", type=_name_list, default=("b64", "url"), help="level-2 payloads: b64,url"
    )
    parser.add_argument(
        "--systems",
        type=_name_list,
        help="systems to measure (default all): model-server, model-server+batching, ours (the "
        "gateway and the model server as shipped), ours-no-batching, baseline, litserve, "
        "photo-ceiling (the same photo work in this process)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny counts, to check the benchmark runs"
    )
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="ONNX Runtime device")
    parser.add_argument("--output", type=Path, help="results directory (default bench/results)")
    parser.add_argument(
        "--precision",
        choices=("float32", "int8"),
        default="float32",
        help="which copy of the bundled model every system serves: "
        + ", ".join(f"{name} {PRECISION_BASE_PATHS[name]}" for name in ("float32", "int8")),
    )
    parser.add_argument(
        "--model-base-path",
        type=Path,
        help="model repository: BASE/<version>/model.onnx (default: the --precision copy)",
    )
    parser.add_argument("--model-name", default="clothing-model", help="model name to serve")
    parser.add_argument("--photos", type=int, help="distinct photos per size (default 24)")
    parser.add_argument(
        "--dataset",
        type=Path,
        help="folder of dataset photos (default ../shared/datasets/clothing-small/validation)",
    )
    parser.add_argument(
        "--batching-parameters-file",
        type=Path,
        help="TF Serving batching parameters for the model server (default its own)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config(args: argparse.Namespace) -> Any:
    from clothing.benchmarks import systems
    from clothing.benchmarks.photos import DEFAULT_DATASET, SIZES
    from clothing.benchmarks.runner import BenchConfig

    repo_root = systems.find_repo_root()
    for size in args.sizes:
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    for payload in args.payloads:
        if payload not in ("b64", "url"):
            raise ValueError(f"unknown payload {payload!r}; choose b64 or url")
    if any(level not in (1, 2) for level in args.levels):
        raise ValueError("--levels takes 1, 2 or 1,2")
    requests = args.requests
    if requests is None and args.duration is None:
        requests = SMOKE_REQUESTS if args.smoke else 200
    if requests is not None and requests < 1:
        raise ValueError("--requests must be at least 1")
    if args.duration is not None and args.duration <= 0:
        raise ValueError("--duration must be positive")
    rounds = args.rounds if args.rounds is not None else (2 if args.smoke else 3)
    if rounds < 1:
        raise ValueError("--rounds must be at least 1")
    smoke_extra: dict[str, Any] = {}
    if args.smoke:
        smoke_extra = {
            "ceiling_seconds": 0.2,
            "ceiling_batch_sizes": (1, 4),
            "bare_runs": 10,
        }
    return BenchConfig(
        model_base_path=args.model_base_path or Path(PRECISION_BASE_PATHS[args.precision]),
        output=args.output or repo_root / "bench" / "results",
        model_name=args.model_name,
        requests=requests,
        duration_s=args.duration,
        concurrency=args.concurrency or (SMOKE_CONCURRENCY if args.smoke else (1, 4, 16, 64)),
        levels=args.levels,
        sizes=args.sizes,
        payloads=args.payloads,
        systems=systems.check_systems(args.systems or systems.ALL_SYSTEMS),
        device=args.device,
        photos=args.photos or (SMOKE_PHOTOS if args.smoke else 24),
        dataset=args.dataset or DEFAULT_DATASET,
        batching_parameters_file=args.batching_parameters_file,
        repo_root=repo_root,
        rounds=rounds,
        **smoke_extra,
    )


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # Unwinds like Ctrl-C, so every started system is stopped on the way out.
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    import signal

    from tqdm import tqdm

    from clothing.benchmarks.devices import providers_for
    from clothing.benchmarks.processes import ServiceError
    from clothing.benchmarks.report import write_results
    from clothing.benchmarks.runner import run_benchmark
    from clothing.benchmarks.summary import print_summary
    from clothing.serving_layout import LayoutError

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        config = _config(args)
        providers_for(config.device)
        results = run_benchmark(
            config,
            lambda total: tqdm(total=total, unit="cell", disable=args.no_progress, file=sys.stderr),
        )
    except (ValueError, FileNotFoundError, LayoutError, RuntimeError, ServiceError) as error:
        print(f"clothing bench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clothing bench: interrupted; every system it started is stopped", file=sys.stderr)
        return 130
    results = write_results(results, config.output)
    print_summary(results, config.output)
    return 0
