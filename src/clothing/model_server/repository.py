"""The model repository: versions on disk, their states, and hot reload.

Layout: ``<base_path>/<integer version>/model.onnx`` with an optional
``metadata.json`` (or ``classes.txt``). The version policy picks which of the
versions on disk to serve; the newest available one answers requests that name
no version. A poll loop (``--file_system_poll_wait_seconds``) loads new
versions off the event loop before unloading the ones they replace, so serving
never stops; a removed version is unloaded once its in-flight requests finish.
A version that fails to load is reported (the reason in the log; status and
readiness say only that it failed, never a path or a runtime's message; a
metric) and the versions already loaded keep serving; it is retried when its
files change. :meth:`Repository.reconfigure` swaps in a new list of models
(a re-read ``--model_config_file``) the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clothing.model_server.backend import Backend, Signature
from clothing.model_server.batching import Batcher
from clothing.model_server.config import ModelConfig
from clothing.model_server.errors import NotFound, Unavailable
from clothing.serving_layout import MODEL_FILE, read_declared, versions_on_disk

log = logging.getLogger(__name__)

# TF Serving's ModelVersionStatus.State names.
LOADING, AVAILABLE, UNLOADING, END = "LOADING", "AVAILABLE", "UNLOADING", "END"


def _fingerprint(version_dir: Path) -> tuple[float, int]:
    try:
        stat = (version_dir / MODEL_FILE).stat()
    except OSError:
        return (0.0, -1)
    return (stat.st_mtime, stat.st_size)


@dataclass
class ModelVersion:
    """One version of a model and its lifecycle."""

    model: str
    version: int
    path: Path
    state: str = LOADING
    error: str = ""
    backend: Backend | None = None
    signature: Signature | None = None
    info: dict[str, Any] = field(default_factory=dict)
    batcher: Batcher | None = None
    fingerprint: tuple[float, int] = (0.0, -1)
    inflight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)


BackendFactory = Callable[[], Backend]
BatcherFactory = Callable[[ModelVersion], Batcher | None]


class Model:
    """The versions of one configured model."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.versions: dict[int, ModelVersion] = {}

    @property
    def name(self) -> str:
        return self.config.name

    def available(self) -> list[ModelVersion]:
        return sorted(
            (v for v in self.versions.values() if v.state == AVAILABLE),
            key=lambda v: v.version,
        )

    def resolve(self, version: int | None, label: str | None) -> ModelVersion:
        """The version a request names, or the newest available one."""
        if label is not None:
            if label not in self.config.labels:
                known = ", ".join(sorted(self.config.labels)) or "none"
                raise NotFound(
                    f"model {self.name} has no version label {label!r} (labels: {known})"
                )
            version = self.config.labels[label]
        if version is not None:
            found = self.versions.get(version)
            if found is not None and found.state == AVAILABLE:
                return found
            if found is not None and found.state == LOADING:
                raise Unavailable(f"model {self.name} version {version} is still loading")
            raise NotFound(f"Servable not found for request: Specific({self.name}, {version})")
        available = self.available()
        if not available:
            raise Unavailable(f"model {self.name} has no available version yet")
        return available[-1]


class Repository:
    """Every configured model; loads, reloads and unloads their versions."""

    def __init__(
        self,
        configs: tuple[ModelConfig, ...],
        backend_factory: BackendFactory,
        batcher_factory: BatcherFactory,
        *,
        on_load: Callable[[str, bool], None] = lambda model, ok: None,
        on_unload: Callable[[str], None] = lambda model: None,
    ) -> None:
        self.models = {config.name: Model(config) for config in configs}
        self._backend_factory = backend_factory
        self._batcher_factory = batcher_factory
        self._on_load = on_load
        self._on_unload = on_unload
        self._sync_lock = asyncio.Lock()
        self._unloads: set[asyncio.Task[None]] = set()

    def model(self, name: str) -> Model:
        try:
            return self.models[name]
        except KeyError:
            raise NotFound(f"Servable not found for request: Latest({name})") from None

    @contextlib.asynccontextmanager
    async def lease(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> AsyncIterator[ModelVersion]:
        """Hold a version for one request; it is not unloaded until released."""
        chosen = self.model(name).resolve(version, label)
        chosen.inflight += 1
        chosen.idle.clear()
        try:
            yield chosen
        finally:
            chosen.inflight -= 1
            if chosen.inflight == 0:
                chosen.idle.set()

    def readiness(self) -> list[str]:
        """Why the server is not ready: models without an AVAILABLE version."""
        problems = []
        for model in self.models.values():
            if not model.available():
                errors = [f"{v.version}: {v.error}" for v in model.versions.values() if v.error]
                detail = f" ({'; '.join(errors)})" if errors else ""
                problems.append(f"model {model.name} has no available version{detail}")
        return problems

    async def sync(self) -> None:
        """Bring every model in line with its files on disk and its policy."""
        async with self._sync_lock:
            await asyncio.gather(*(self._sync_model(model) for model in self.models.values()))

    async def reconfigure(self, configs: tuple[ModelConfig, ...]) -> None:
        """Serve ``configs`` from now on, without a gap for the models that stay.

        A new model (or one whose base path changed) is loaded before requests can
        reach it; the model it replaces, and every model no longer configured, is
        unloaded once its in-flight requests finish. A changed version policy or
        version labels apply to the model in place.
        """
        async with self._sync_lock:
            wanted = {config.name: config for config in configs}
            for name, config in wanted.items():
                current = self.models.get(name)
                if current is not None and current.config.base_path == config.base_path:
                    current.config = config
                    continue
                fresh = Model(config)
                await self._sync_model(fresh)
                self.models[name] = fresh
                if current is not None:
                    self._retire(current)
            for name in set(self.models) - set(wanted):
                self._retire(self.models.pop(name))
            await asyncio.gather(*(self._sync_model(model) for model in self.models.values()))

    def _retire(self, model: Model) -> None:
        for version in model.versions.values():
            if version.state == AVAILABLE:
                self._start_unload(version)

    async def _sync_model(self, model: Model) -> None:
        on_disk = versions_on_disk(model.config.base_path)
        loadable = {}
        for number, path in on_disk.items():
            known = model.versions.get(number)
            fingerprint = _fingerprint(path)
            failed = known is not None and known.state == END and known.error
            # A failed version is retried only once its files change.
            if failed and known is not None and known.fingerprint == fingerprint:
                continue
            loadable[number] = path
        wanted = model.config.policy.select(loadable)
        to_load = [
            n
            for n in sorted(wanted)
            if n not in model.versions or model.versions[n].state in (END,)
        ]
        if to_load:
            await asyncio.gather(*(self._load(model, n, loadable[n]) for n in to_load))
        # Unload only after the replacements are loaded: serving never gaps.
        succeeded = {n for n in wanted if model.versions[n].state == AVAILABLE}
        keep = succeeded
        if model.config.policy.kind == "latest":
            # A newer version that failed to load leaves older loaded ones serving.
            missing = model.config.policy.num_versions - len(succeeded)
            older = sorted(
                (v.version for v in model.available() if v.version not in succeeded),
                reverse=True,
            )
            if missing > 0:
                keep = succeeded | set(older[:missing])
        for version in list(model.versions.values()):
            if version.state == AVAILABLE and version.version not in keep:
                self._start_unload(version)

    async def _load(self, model: Model, number: int, path: Path) -> None:
        version = ModelVersion(model.name, number, path, fingerprint=_fingerprint(path))
        model.versions[number] = version
        backend = self._backend_factory()
        log.info("loading model %s version %d from %s", model.name, number, path)
        try:
            await asyncio.to_thread(backend.load, path / MODEL_FILE)
            version.signature = backend.signature()
            version.info = await asyncio.to_thread(read_declared, path)
        except Exception as error:
            # Callers (status, /readyz) get no path or runtime message; the log has both.
            version.state, version.error = END, f"failed to load version {number}; see the log"
            log.error(  # the message is enough; no traceback
                "model %s: failed to load version %d from %s: %s", model.name, number, path, error
            )
            self._on_load(model.name, False)
            with contextlib.suppress(Exception):
                backend.unload()
            return
        version.backend = backend
        version.batcher = self._batcher_factory(version)
        version.state = AVAILABLE
        version.idle.set()
        log.info("model %s version %d is AVAILABLE", model.name, number)
        self._on_load(model.name, True)

    def _start_unload(self, version: ModelVersion) -> None:
        version.state = UNLOADING
        task = asyncio.create_task(self._unload(version))
        self._unloads.add(task)
        task.add_done_callback(self._unloads.discard)

    async def _unload(self, version: ModelVersion) -> None:
        log.info("unloading model %s version %d", version.model, version.version)
        await version.idle.wait()
        if version.batcher is not None:
            await version.batcher.stop()
        if version.backend is not None:
            await asyncio.to_thread(version.backend.unload)
        version.backend = None
        version.state = END
        self._on_unload(version.model)
        log.info("model %s version %d unloaded", version.model, version.version)

    async def poll(self, interval: float) -> None:
        """Sync forever, ``interval`` seconds apart; errors are logged, never fatal."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sync()
            except Exception:
                log.exception("model repository poll failed")

    async def close(self) -> None:
        """Unload everything once in-flight requests are done."""
        for model in self.models.values():
            for version in model.versions.values():
                if version.state == AVAILABLE:
                    self._start_unload(version)
        if self._unloads:
            await asyncio.gather(*self._unloads, return_exceptions=True)
