"""One benchmark run: start each system, drive it at each concurrency, collect rows."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from clothing.benchmarks import level1, level2, targets
from clothing.benchmarks.devices import providers_for
from clothing.benchmarks.interleave import (
    Contender,
    merge_blocks,
    round_ratio_range,
    run_interleaved,
)
from clothing.benchmarks.loadgen import LoadResult, run_load
from clothing.benchmarks.machine import describe_machine, timestamp
from clothing.benchmarks.paired import run_paired
from clothing.benchmarks.photo_ceiling import NAME as PHOTO_CEILING
from clothing.benchmarks.photo_ceiling import PhotoCeiling
from clothing.benchmarks.photos import DEFAULT_DATASET, PhotoSet, make_photo_sets
from clothing.benchmarks.preprocess import measure_preprocessing
from clothing.benchmarks.processes import Service
from clothing.benchmarks.systems import (
    ALL_SYSTEMS,
    BASELINE,
    FRAMEWORK,
    LEVEL1_SYSTEMS,
    LEVEL2_SYSTEMS,
    OURS,
    OURS_SERVER_FLAGS,
    HttpEndpoint,
    ModelServerEndpoint,
    ServingOptions,
    gateway,
    image_server,
    model_server,
    python_app,
)
from clothing.serving_layout import ModelMetadata, read_metadata


class Progress(Protocol):
    def set_description(self, desc: str) -> None: ...

    def update(self, n: int = 1) -> bool | None: ...


class Client(Protocol):
    async def send(self, index: int) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class BenchConfig:
    model_base_path: Path
    output: Path
    model_name: str = "clothing-model"
    requests: int | None = 200
    duration_s: float | None = None
    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    levels: tuple[int, ...] = (1, 2)
    sizes: tuple[str, ...] = ("dataset", "phone")
    payloads: tuple[str, ...] = level2.PAYLOADS
    systems: tuple[str, ...] = ALL_SYSTEMS
    device: str = "cpu"
    photos: int = 24
    dataset: Path = DEFAULT_DATASET
    ceiling_seconds: float = 2.0
    ceiling_batch_sizes: tuple[int, ...] = level1.CEILING_BATCH_SIZES
    bare_runs: int = 100
    rounds: int = 3
    batching_parameters_file: Path | None = None
    repo_root: Path = field(default_factory=Path.cwd)

    def cells(self) -> int:
        """How many (system, size, payload, concurrency) measurements the run makes."""
        per_level1 = sum(name in LEVEL1_SYSTEMS for name in self.systems)
        per_level2 = sum(name in LEVEL2_SYSTEMS for name in self.systems)
        count = 0
        if 1 in self.levels:
            count += per_level1 * len(self.concurrency)
        if 2 in self.levels:
            count += per_level2 * len(self.sizes) * len(self.payloads) * len(self.concurrency)
            if OURS in self.systems and "b64" in self.payloads:
                count += len(self.sizes)  # gateway vs direct gRPC, paired
        return count


class Bench:
    def __init__(self, config: BenchConfig, progress: Progress) -> None:
        self.config = config
        self.progress = progress
        self.rows: list[dict[str, Any]] = []
        self.info: ModelMetadata = read_metadata(config.model_base_path)
        self.serving = ServingOptions(
            model_base_path=config.model_base_path.resolve(),
            model_name=config.model_name,
            device=config.device,
            repo_root=config.repo_root,
            batching_parameters_file=config.batching_parameters_file,
        )

    def _row(self, level: int, system: str, size: str, payload: str, result: LoadResult) -> None:
        self.rows.append(
            {"level": level, "system": system, "size": size, "payload": payload} | result.summary()
        )

    async def measure_level1(self) -> dict[str, Any]:
        session = level1.new_session(self.info, providers_for(self.config.device))
        ceiling = level1.measure_ceiling(
            session,
            self.info,
            batch_sizes=self.config.ceiling_batch_sizes,
            seconds_per_size=self.config.ceiling_seconds,
        )
        bare = level1.measure_bare_run(session, self.info, runs=self.config.bare_runs)
        bare_p50 = statistics.median(bare) * 1000.0
        c1_over_bare: dict[str, float] = {}
        for system in self.config.systems:
            if system not in LEVEL1_SYSTEMS:
                continue
            batching = system == "model-server+batching"
            with model_server(self.serving, batching=batching) as endpoint:
                client = level1.GrpcPredictor(
                    endpoint.grpc_address, self.config.model_name, self.info
                )
                try:
                    for concurrency in self.config.concurrency:
                        result, ceilings, floor = await self._level1_cell(
                            session, ceiling.best_batch, client, system, concurrency
                        )
                        # Blocks of equal length: the mean rate is the pooled rate.
                        adjacent = statistics.fmean(ceilings)
                        self._row(1, system, "tensor", "tensor", result)
                        self.rows[-1]["ceiling_images_per_s"] = round(adjacent, 2)
                        self.rows[-1]["ratio_to_ceiling"] = round(result.images_per_s / adjacent, 3)
                        self.rows[-1]["ratio_to_ceiling_range"] = round_ratio_range(
                            result.block_images_per_s, ceilings
                        )
                        if floor is not None:
                            self.rows[-1]["bare_p50_ms"] = round(floor, 3)
                            c1_over_bare[system] = round(result.p50_ms - floor, 3)
                finally:
                    await client.close()
        del session
        return {
            "ceiling": {
                "images_per_s": round(ceiling.images_per_s, 2),
                "best_batch": ceiling.best_batch,
                "per_batch": {str(k): round(v, 2) for k, v in ceiling.per_batch.items()},
            },
            "bare_run": {
                "p50_ms": round(bare_p50, 3),
                "p99_ms": round(sorted(bare)[int(0.99 * (len(bare) - 1))] * 1000.0, 3),
            },
            "c1_p50_over_bare_ms": c1_over_bare,
        }

    async def _level1_cell(
        self, session: Any, best_batch: int, client: Client, system: str, concurrency: int
    ) -> tuple[LoadResult, list[float], float | None]:
        """A server cell in ``rounds`` blocks, each next to a block of the in-process ceiling.

        Returns the pooled server result, the ceiling of each round and the bare
        ``session.run`` p50 (concurrency 1 only).

        This machine's speed drifts by 10-20% within minutes, so the server is compared
        with the ceiling (and, at c=1, the bare run) measured in alternating blocks within
        the same cell, while the idle server waits: drift lands on both sides.
        """
        rounds = max(1, self.config.rounds)
        requests = max(1, self.config.requests // rounds) if self.config.requests else None
        duration = self.config.duration_s / rounds if self.config.duration_s else None
        blocks: list[LoadResult] = []
        ceiling_rates: list[float] = []
        bare: list[float] = []
        self.progress.set_description(f"L1 {system} c={concurrency}")
        for block in range(rounds):
            if block % 2 == 1:
                blocks.append(
                    await self._level1_block(client, concurrency, requests, duration, block)
                )
            ceiling = level1.measure_ceiling(
                session,
                self.info,
                batch_sizes=(best_batch,),
                seconds_per_size=self.config.ceiling_seconds / rounds,
            )
            ceiling_rates.append(ceiling.images_per_s)
            if concurrency == 1:
                bare += level1.measure_bare_run(
                    session, self.info, runs=max(3, self.config.bare_runs // rounds)
                )
            if block % 2 == 0:
                blocks.append(
                    await self._level1_block(client, concurrency, requests, duration, block)
                )
        self.progress.update(1)
        floor = statistics.median(bare) * 1000.0 if bare else None
        return merge_blocks(blocks), ceiling_rates, floor

    async def _level1_block(
        self,
        client: Client,
        concurrency: int,
        requests: int | None,
        duration: float | None,
        block: int,
    ) -> LoadResult:
        return await run_load(
            client.send,
            concurrency=concurrency,
            requests=requests,
            duration_s=duration,
            warmup=max(2, 2 * concurrency) if block == 0 else 0,
        )

    async def _interleaved_cells(
        self,
        endpoints: dict[str, HttpEndpoint],
        pausable: dict[str, tuple[Service, ...]],
        photo_sets: dict[str, PhotoSet],
        image_base: str,
    ) -> None:
        """Every level-2 cell, the systems in alternating blocks (see ``interleave``)."""
        for size, photos in photo_sets.items():
            ceiling = self._photo_ceiling(photos)
            try:
                await self._size_cells(
                    size,
                    photos=photos,
                    endpoints=endpoints,
                    pausable=pausable,
                    ceiling=ceiling,
                    image_base=image_base,
                )
            finally:
                if ceiling is not None:
                    ceiling.close()

    def _photo_ceiling(self, photos: PhotoSet) -> PhotoCeiling | None:
        if PHOTO_CEILING not in self.config.systems:
            return None
        encoded = [path.read_bytes() for path in photos.paths()]
        return PhotoCeiling(self.info, encoded, providers_for(self.config.device))

    async def _size_cells(
        self,
        size: str,
        *,
        photos: PhotoSet,
        endpoints: dict[str, HttpEndpoint],
        pausable: dict[str, tuple[Service, ...]],
        ceiling: PhotoCeiling | None,
        image_base: str,
    ) -> None:
        """The cells of one photo size: every payload and concurrency."""
        for payload in self.config.payloads:
            bodies = level2.request_bodies(photos, payload, image_base)
            for concurrency in self.config.concurrency:
                clients = {
                    name: level2.HttpClassifier(endpoint.predict_url, bodies, concurrency)
                    for name, endpoint in endpoints.items()
                }
                contenders = [
                    Contender(name, client.send, pausable[name]) for name, client in clients.items()
                ]
                if ceiling is not None:
                    contenders.append(Contender(PHOTO_CEILING, None, (), ceiling.block))
                self.progress.set_description(f"L2 {size} {payload} c={concurrency}")
                try:
                    results = await run_interleaved(
                        contenders,
                        concurrency=concurrency,
                        rounds=self.config.rounds,
                        requests=self.config.requests,
                        duration_s=self.config.duration_s,
                        warmup=max(2, 2 * concurrency),
                        on_done=lambda _: self.progress.update(1),
                    )
                finally:
                    for client in clients.values():
                        await client.close()
                for name, result in results.items():
                    self._row(2, name, size, payload, result)

    async def _overhead(
        self,
        endpoint: ModelServerEndpoint,
        gateway_url: str,
        photo_sets: dict[str, PhotoSet],
    ) -> dict[str, Any]:
        """Gateway against direct gRPC, paired request by request on the same photos."""
        overhead = {}
        for size, photos in photo_sets.items():
            self.progress.set_description(f"L2 gateway vs direct gRPC {size} c=1")
            gateway = level2.HttpClassifier(
                gateway_url, level2.request_bodies(photos, "b64", None), 1
            )
            direct = level2.DirectClassifier(
                endpoint.grpc_address, self.config.model_name, self.info, photos
            )
            try:
                paired = await run_paired(
                    gateway.send,
                    direct.send,
                    pairs=self.config.requests,
                    duration_s=self.config.duration_s,
                    warmup=4,
                )
            finally:
                await gateway.close()
                await direct.close()
                self.progress.update(1)
            self._row(2, "direct-grpc", size, "b64", paired.second)
            overhead[size] = {
                "pairs": paired.pairs,
                "gateway_p50_ms": round(paired.first.p50_ms, 3),
                "direct_p50_ms": round(paired.second.p50_ms, 3),
                "overhead_ms": round(paired.median_difference_ms, 3),
                "gateway_errors": paired.first.errors,
                "direct_errors": paired.second.errors,
            }
        return overhead

    async def measure_level2(self, workdir: Path) -> dict[str, Any]:
        photo_sets = make_photo_sets(
            workdir, self.config.sizes, count=self.config.photos, dataset=self.config.dataset
        )
        extras: dict[str, Any] = {
            "photos": {
                size: {
                    "count": len(p.names),
                    "width": p.width,
                    "height": p.height,
                    "mean_bytes": p.mean_bytes(),
                    "source": p.source,
                }
                for size, p in photo_sets.items()
            },
            "preprocessing": {
                size: measure_preprocessing(self.info, photos)
                for size, photos in photo_sets.items()
            },
        }
        first = next(iter(photo_sets.values())).names[0]
        wanted = [name for name in self.config.systems if name in LEVEL2_SYSTEMS]
        with image_server(workdir, first) as image_base, contextlib.ExitStack() as stack:
            endpoints: dict[str, HttpEndpoint] = {}
            pausable: dict[str, tuple[Service, ...]] = {}
            server: ModelServerEndpoint | None = None
            for name in wanted:
                if name in OURS_SERVER_FLAGS:
                    started = stack.enter_context(
                        model_server(self.serving, batching=False, flags=OURS_SERVER_FLAGS[name])
                    )
                    endpoints[name] = stack.enter_context(gateway(self.serving, started))
                    pausable[name] = (endpoints[name].service, started.service)
                    if name == OURS:
                        server = started
                elif name != PHOTO_CEILING:
                    endpoints[name] = stack.enter_context(python_app(self.serving, name))
                    pausable[name] = (endpoints[name].service,)
            await self._interleaved_cells(endpoints, pausable, photo_sets, image_base)
            if server is not None and "b64" in self.config.payloads:
                extras["gateway_overhead"] = await self._overhead(
                    server, endpoints[OURS].predict_url, photo_sets
                )
        return extras

    async def run(self) -> dict[str, Any]:
        results: dict[str, Any] = {
            "timestamp": timestamp(),
            "machine": describe_machine(),
            "config": _config_summary(self.config),
            "model": {
                "path": str(self.info.model_file),
                "version": self.info.version,
                "height": self.info.height,
                "width": self.info.width,
                "preprocessing": self.info.preprocessing,
                "precision": self.info.precision,
            },
        }
        if 1 in self.config.levels:
            results["level1"] = await self.measure_level1()
        if 2 in self.config.levels:
            with tempfile.TemporaryDirectory(prefix="bench-photos-") as workdir:
                results |= await self.measure_level2(Path(workdir))
        add_ratios(self.rows)
        results["rows"] = self.rows
        results["targets"] = targets.judge(results)
        # Other work on the machine skews every figure; the load at both ends says how much.
        results["machine"]["load_average_end"] = describe_machine()["load_average"]
        return results


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """On each level-2 row: its images/s ÷ the photo-in ceiling's; on ours (either kind)
    also ÷ the baseline's and the framework's."""
    index = {(r["system"], r["size"], r["payload"], r["concurrency"]): r for r in rows}
    for row in rows:
        if row["level"] != 2 or row["system"] == PHOTO_CEILING:
            continue
        key = (row["size"], row["payload"], row["concurrency"])
        comparisons = [(PHOTO_CEILING, "vs_ceiling")]
        if row["system"] in OURS_SERVER_FLAGS:
            comparisons += [(BASELINE, "vs_baseline"), (FRAMEWORK, "vs_framework")]
        for other, column in comparisons:
            theirs = index.get((other, *key))
            if theirs and theirs["images_per_s"]:
                row[column] = round(row["images_per_s"] / theirs["images_per_s"], 3)
                row[f"{column}_range"] = round_ratio_range(
                    row.get("block_images_per_s", []), theirs.get("block_images_per_s", [])
                )


def _config_summary(config: BenchConfig) -> dict[str, Any]:
    """The settings as recorded; paths relative to the repository, so no machine's folders."""
    summary = asdict(config)
    return {
        key: _from_repo_root(value, config.repo_root) if isinstance(value, Path) else value
        for key, value in summary.items()
    }


def _from_repo_root(path: Path, repo_root: Path) -> str:
    return os.path.relpath(path, repo_root) if path.is_absolute() else str(path)


def run_benchmark(config: BenchConfig, progress_factory: Callable[[int], Any]) -> dict[str, Any]:
    """Run everything ``config`` asks for; ``progress_factory(total)`` makes the bar."""
    with progress_factory(config.cells()) as progress:
        bench = Bench(config, progress)
        try:
            return asyncio.run(_cancelled_by_sigterm(bench.run()))
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None


async def _cancelled_by_sigterm(run: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Await ``run``; SIGTERM cancels it, so every ``with`` on the way out stops its system.

    The loop dispatches the signal between callbacks. A Python-level handler that
    raises instead can fire inside a garbage-collection callback, where the
    exception is printed and dropped and the run goes on.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(run)
    previous = signal.getsignal(signal.SIGTERM)
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
