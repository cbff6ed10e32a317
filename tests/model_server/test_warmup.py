"""Warm-up: each session runs once on zeros before its version turns AVAILABLE."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import grpc
import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from clothing.model_server import cli
from clothing.model_server.backend import OnnxBackend
from clothing.model_server.config import BatchingConfig, ModelConfig, RuntimeConfig, ServerConfig
from clothing.model_server.server import ModelServer
from clothing.processes import free_port
from clothing.proto.tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from tests.fixtures import build_test_model
from tests.model_server.conftest import MODEL
from tests.model_server.test_grpc import images, request_for
from tests.model_server.test_reload import wait_for


class CountingBackend(OnnxBackend):
    """The real backend, noting each run's session and batch size."""

    def __init__(self, runtime: RuntimeConfig) -> None:
        super().__init__(runtime)
        self.runs: list[tuple[str, int]] = []

    def _run(
        self, session: object | None, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        which = "solo" if session is self._solo_session else "main"
        self.runs.append((which, len(next(iter(inputs.values())))))
        return super()._run(session, inputs)


def test_loading_runs_every_session_at_every_warm_up_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = build_test_model(tmp_path / "1")
    runtime = RuntimeConfig(intra_op_threads=1, solo_intra_op_threads=2, warmup_batch_sizes=(2, 4))
    backend = CountingBackend(runtime)
    with caplog.at_level(logging.INFO):
        backend.load(model)
    assert backend.runs == [("main", 2), ("solo", 2), ("main", 4), ("solo", 4)]
    assert "warmed up 2 session(s) at batch size(s) 2, 4" in caplog.text
    quiet = CountingBackend(RuntimeConfig(warmup_batch_sizes=()))
    quiet.load(model)
    assert quiet.runs == []


def test_a_model_with_unknown_dimensions_past_the_batch_is_not_warmed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "ragged",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "length"])],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    backend = CountingBackend(RuntimeConfig())
    with caplog.at_level(logging.INFO):
        backend.load(path)
    assert backend.runs == []
    assert "no warm-up" in caplog.text


def test_warm_up_sizes_follow_the_allowed_batch_sizes() -> None:
    assert RuntimeConfig().resolved_for(None).warmup_batch_sizes == (1,)
    allowed = BatchingConfig(max_batch_size=8, allowed_batch_sizes=(2, 8))
    assert RuntimeConfig().resolved_for(allowed).warmup_batch_sizes == (2, 8)
    assert RuntimeConfig(warmup_batch_sizes=()).resolved_for(allowed).warmup_batch_sizes == ()


def test_the_tf_serving_flag_turns_warm_up_off() -> None:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    flags = ["--model_name=m", "--model_base_path=/m"]
    default = cli.config_from_args(parser.parse_args(flags), {})
    assert default.runtime.warmup_batch_sizes == (1,)
    off = cli.config_from_args(parser.parse_args([*flags, "--enable_model_warmup=false"]), {})
    assert off.runtime.warmup_batch_sizes == ()


class HeldWarmUp(OnnxBackend):
    """The real backend; version 2's warm-up runs wait for the test and note the
    version's state in the repository at that moment."""

    states_while_warming: ClassVar[list[str]] = []
    warming: ClassVar[threading.Event]
    release: ClassVar[threading.Event]
    server: ClassVar[ModelServer]

    def load(self, path: Path) -> None:
        self._loading_two = path.parent.name == "2"
        try:
            super().load(path)
        finally:
            self._loading_two = False

    def _run(
        self, session: object | None, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        if getattr(self, "_loading_two", False):
            two = self.server.repository.model(MODEL).versions[2]
            self.states_while_warming.append(two.state)
            self.warming.set()
            assert self.release.wait(30), "the test never released the warm-up"
        return super()._run(session, inputs)


async def test_a_version_turns_available_only_after_its_warm_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / MODEL
    build_test_model(base / "1")
    config = ServerConfig(
        models=(ModelConfig(MODEL, base),),
        host="127.0.0.1",
        port=0,
        rest_api_port=0,
        poll_wait_seconds=0.05,
        shutdown_grace_seconds=5,
    )
    runtime = config.runtime.resolved_for(None)
    server = ModelServer(config, lambda: HeldWarmUp(runtime))
    for name, value in (
        ("server", server),
        ("warming", threading.Event()),
        ("release", threading.Event()),
        ("states_while_warming", []),
    ):
        monkeypatch.setattr(HeldWarmUp, name, value, raising=False)
    caplog.set_level(logging.INFO, logger="clothing.model_server")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    models = model_service_pb2_grpc.ModelServiceStub(channel)  # type: ignore[no-untyped-call]
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]

    async def states() -> dict[int, int]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL
        response = await models.GetModelStatus(request)
        return {s.version: s.state for s in response.model_version_status}

    async def served() -> int:
        response = await predictions.Predict(request_for(images(1)))
        return int(response.model_spec.version.value)

    try:
        build_test_model(base / "2", seed=2)
        assert await asyncio.to_thread(HeldWarmUp.warming.wait, 30), "no warm-up began"
        # Warming up: version 2 is LOADING, version 1 still serves everyone.
        loading = get_model_status_pb2.ModelVersionStatus.LOADING
        available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        assert await states() == {1: available, 2: loading}
        assert await served() == 1
        HeldWarmUp.release.set()

        async def two_serves() -> bool:
            return await served() == 2

        await wait_for(two_serves)
    finally:
        HeldWarmUp.release.set()
        await channel.close()
        await server.stop()
    assert HeldWarmUp.states_while_warming, "version 2 was warmed up"
    assert set(HeldWarmUp.states_while_warming) == {"LOADING"}
    messages = [r.getMessage() for r in caplog.records]
    warmed = next(i for i, m in enumerate(messages) if "2/model.onnx: warmed up" in m)
    turned = next(i for i, m in enumerate(messages) if "version 2 is AVAILABLE" in m)
    assert warmed < turned


class HeldFirstWarmUp(OnnxBackend):
    """The real backend; its first run (the initial version's warm-up) waits for the test."""

    release: ClassVar[threading.Event]
    held: ClassVar[threading.Event]

    def _run(
        self, session: object | None, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        if not self.held.is_set():
            self.held.set()
            assert self.release.wait(30), "the test never released the warm-up"
        return super()._run(session, inputs)


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_the_grpc_port_opens_only_once_the_initial_models_are_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / MODEL
    build_test_model(base / "1")
    grpc_port = free_port()
    config = ServerConfig(
        models=(ModelConfig(MODEL, base),),
        host="127.0.0.1",
        port=grpc_port,
        rest_api_port=0,
        shutdown_grace_seconds=5,
    )
    runtime = config.runtime.resolved_for(None)
    monkeypatch.setattr(HeldFirstWarmUp, "release", threading.Event(), raising=False)
    monkeypatch.setattr(HeldFirstWarmUp, "held", threading.Event(), raising=False)
    server = ModelServer(config, lambda: HeldFirstWarmUp(runtime))
    starting = asyncio.create_task(server.start())
    try:
        assert await asyncio.to_thread(HeldFirstWarmUp.held.wait, 30), "no warm-up began"
        readiness = f"http://127.0.0.1:{server.rest_port}/readyz"
        async with httpx.AsyncClient() as client:
            # Loading: REST answers "not ready"; nothing listens on the gRPC port, so a
            # client balancing over DNS skips this replica instead of getting UNAVAILABLE.
            assert (await client.get(readiness)).status_code == 503
            assert not await asyncio.to_thread(_accepts, grpc_port)
            HeldFirstWarmUp.release.set()
            await asyncio.wait_for(starting, 30)
            assert (await client.get(readiness)).status_code == 200
        assert await asyncio.to_thread(_accepts, grpc_port)
    finally:
        HeldFirstWarmUp.release.set()
        await asyncio.gather(starting, return_exceptions=True)
        await server.stop()
