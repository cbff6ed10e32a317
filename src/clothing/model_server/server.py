"""The model server process: repository, gRPC and REST on one event loop, and drain.

gRPC (grpc.aio) and REST (uvicorn) share the asyncio loop; ONNX Runtime calls
and model loads run in worker threads, never on the loop. On SIGTERM or
SIGINT readiness turns 503, both servers stop accepting, in-flight requests
get ``shutdown_grace_seconds`` to finish, models are unloaded, and the process
exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import uvicorn

from clothing.cgroup import available_cpus, memory_limit
from clothing.http_limits import limited_protocol
from clothing.model_server.backend import Backend, OnnxBackend, resolve_providers
from clothing.model_server.batching import Batcher
from clothing.model_server.config import ModelConfig, ServerConfig
from clothing.model_server.core import Dataplane
from clothing.model_server.grpc_api import build_server
from clothing.model_server.metrics import ServerMetrics
from clothing.model_server.reload_config import check_allowed
from clothing.model_server.repository import ModelVersion, Repository
from clothing.model_server.rest_api import ServerState, build_app
from clothing.model_server.tf_serving_config import read_model_config_file

log = logging.getLogger(__name__)

# Share of the process's memory limit that the inputs of the Predicts being served may
# declare, all together (the rest: the model, ONNX Runtime's buffers, batches and
# outputs); at least one message's worth. Without a limit, 4 GiB is assumed.
INPUT_MEMORY_SHARE = 4
MEMORY_WITHOUT_LIMIT = 4 * 1024**3


def admitted_input_bytes(max_message_bytes: int) -> int:
    return max(max_message_bytes, (memory_limit() or MEMORY_WITHOUT_LIMIT) // INPUT_MEMORY_SHARE)


class _UvicornServer(uvicorn.Server):
    """Uvicorn without its own signal handling: the model server owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ModelServer:
    def __init__(
        self, config: ServerConfig, backend_factory: Callable[[], Backend] | None = None
    ) -> None:
        self.config = config
        self.metrics = ServerMetrics()
        self.cpus = available_cpus()
        self.predict_threads = max(
            self.cpus, config.batching.num_batch_threads if config.batching else 1
        )
        self.executor = ThreadPoolExecutor(
            max_workers=self.predict_threads, thread_name_prefix="predict"
        )
        self.runtime = runtime = config.runtime.resolved_for(config.batching)
        self.repository = Repository(
            config.models,
            backend_factory or (lambda: OnnxBackend(runtime)),
            self._make_batcher,
            on_load=self._on_load,
            on_unload=self._on_unload,
        )
        self.dataplane = Dataplane(self.repository, self.metrics, self.executor)
        self.state = ServerState()
        self.grpc_port = 0
        self.rest_port = 0
        self._grpc: grpc.aio.Server | None = None
        self._rest: _UvicornServer | None = None
        self._rest_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._config_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    def _make_batcher(self, version: ModelVersion) -> Batcher | None:
        if self.config.batching is None or version.backend is None:
            return None
        model = version.model
        # Each series is looked up once here, not on every batch.
        batch_size = self.metrics.batch_size.labels(model=model)
        queue_depth = self.metrics.queue_depth.labels(model=model)
        queuing = self.metrics.queuing_latency.labels(model=model)
        runtime = self.metrics.runtime_latency.labels(model=model, version=str(version.version))
        return Batcher(
            version.backend.predict,
            self.config.batching,
            self.executor,
            on_batch=batch_size.observe,
            on_queue_depth=queue_depth.inc,
            on_queue_wait=queuing.observe,
            on_runtime=runtime.observe,
            predict_alone=version.backend.predict_alone,
        )

    def _on_load(self, model: str, ok: bool) -> None:
        self.metrics.loads.labels(model=model, result="success" if ok else "failure").inc()
        self._count_available(model)

    def _on_unload(self, model: str) -> None:
        self.metrics.unloads.labels(model=model).inc()
        self._count_available(model)

    def _count_available(self, model: str) -> None:
        # A model being added is not in the repository until loaded; a removed one is gone.
        found = self.repository.models.get(model)
        available = found.available() if found is not None else []
        self.metrics.available_versions.labels(model=model).set(len(available))
        newest = max((version.version for version in available), default=0)
        self.metrics.served_version.labels(model=model).set(newest)

    async def start(self) -> None:
        """Bind the REST port, load the models, then bind the gRPC port.

        REST answers health and readiness (503 until the models are loaded) from the
        start. gRPC opens only once the initial models are loaded and warmed up, as
        TF Serving's does: a gateway that balances over every address DNS returns
        (compose, a headless Service before readiness gates it) then never sends a
        Predict to a replica that can only answer UNAVAILABLE.
        """
        # A missing execution provider is a start-up error, not a per-version one.
        resolve_providers(self.config.runtime.execution_providers)
        for config in self.config.models:
            self.metrics.queue_depth.labels(model=config.name).set(0)
            self.metrics.available_versions.labels(model=config.name).set(0)
            self.metrics.served_version.labels(model=config.name).set(0)
            if self.config.batching is not None:
                capacity = self.config.batching.max_queued_rows
                self.metrics.queue_capacity.labels(model=config.name).set(capacity)
        self.metrics.inflight_limit.labels(transport="grpc").set(
            self.config.max_concurrent_rpcs or 0
        )
        app = build_app(
            self.dataplane,
            self.state,
            max_message_bytes=self.config.max_message_bytes,
            max_batch_rows=self.config.max_batch_rows,
            max_concurrent=self.config.max_concurrent_rest,
            cors_origins=self.config.cors_origins,
            prometheus_path=self.config.prometheus_path,
        )
        rest_config = uvicorn.Config(
            app,
            host=self.config.host,
            port=self.config.rest_api_port,
            log_level="warning",
            # Logging is set up by the command (clothing.logs); access lines come from
            # the app's own middleware.
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(self.config.shutdown_grace_seconds)),
            # A cap (431) and a deadline (408) on each request's head: see http_limits.
            http=limited_protocol(),
        )
        self._rest = _UvicornServer(rest_config)
        self._rest_task = asyncio.create_task(self._rest.serve())
        while not self._rest.started:
            if self._rest_task.done():
                self._rest_task.result()
                raise RuntimeError(f"REST server did not start on port {self.config.rest_api_port}")
            await asyncio.sleep(0.01)
        self.rest_port = self._rest.servers[0].sockets[0].getsockname()[1]
        log.info("REST on port %d", self.rest_port)
        log.info(
            "threads for %d CPU(s): predict pool %d, ONNX Runtime intra-op %d, solo session %d",
            self.cpus,
            self.predict_threads,
            self.runtime.intra_op_threads,
            self.runtime.solo_intra_op_threads,
        )
        await self.repository.sync()
        await self._start_grpc()
        if self.config.poll_wait_seconds > 0:
            self._poll_task = asyncio.create_task(
                self.repository.poll(self.config.poll_wait_seconds)
            )
        if self.config.model_config_file and self.config.config_poll_wait_seconds > 0:
            self._config_task = asyncio.create_task(
                self._watch_model_config(
                    self.config.model_config_file, self.config.config_poll_wait_seconds
                )
            )

    async def _start_grpc(self) -> None:
        self._grpc = build_server(
            self.dataplane,
            response_tensor_content=self.config.response_tensor_content,
            max_message_bytes=self.config.max_message_bytes,
            max_batch_rows=self.config.max_batch_rows,
            max_concurrent_rpcs=self.config.max_concurrent_rpcs,
            max_admitted_bytes=admitted_input_bytes(self.config.max_message_bytes),
            channel_arguments=self.config.grpc_channel_arguments,
            reload=self.reload_from_rpc if self.config.allow_config_reload_rpc else None,
        )
        self.grpc_port = self._grpc.add_insecure_port(f"{self.config.host}:{self.config.port}")
        await self._grpc.start()
        self.state.grpc_open = True
        log.info("gRPC on port %d", self.grpc_port)

    async def _watch_model_config(self, path: Path, interval: float) -> None:
        """Re-read ``path`` every ``interval`` s; a file that does not parse changes nothing."""
        current = self.config.models
        while True:
            await asyncio.sleep(interval)
            try:
                models = await asyncio.to_thread(read_model_config_file, path)
            except ValueError as error:
                log.error("kept the current models: %s", error)
                continue
            if models == current:
                continue
            if len(models) > self.config.max_models:
                log.error(
                    "kept the current models: %s lists %d, over --max_models", path, len(models)
                )
                continue
            log.info("%s changed: now serving %s", path, ", ".join(m.name for m in models))
            try:
                await self.apply_models(models)
            except Exception:
                log.exception("applying %s failed", path)
            current = models

    async def reload_from_rpc(self, models: tuple[ModelConfig, ...]) -> list[str]:
        """``apply_models`` for HandleReloadConfigRequest: within the roots and the count."""
        check_allowed(models, roots=self.config.model_roots, max_models=self.config.max_models)
        return await self.apply_models(models)

    async def apply_models(self, models: tuple[ModelConfig, ...]) -> list[str]:
        """Serve ``models`` from now on; what keeps any of them from serving, if anything."""
        before = set(self.repository.models)
        await self.repository.reconfigure(models)
        for name in before | {model.name for model in models}:
            self._count_available(name)
        return self.repository.readiness()

    async def stop(self) -> None:
        """Drain: not ready, stop accepting, finish in-flight work, unload."""
        if self.state.draining:
            await self._stopped.wait()
            return
        self.state.draining = True
        log.info("draining (grace %.1fs)", self.config.shutdown_grace_seconds)
        for task in (self._poll_task, self._config_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        stops = []
        if self._grpc is not None:
            stops.append(self._grpc.stop(self.config.shutdown_grace_seconds))
        if self._rest is not None and self._rest_task is not None:
            self._rest.should_exit = True
            stops.append(self._rest_task)
        await asyncio.gather(*stops, return_exceptions=True)
        await self.repository.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._stopped.set()
        log.info("stopped")

    async def serve_until_signal(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await self.start()
        await stop.wait()
        await self.stop()
