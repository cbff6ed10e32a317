"""In-process model servers on loopback with ephemeral ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from clothing.model_server.config import ModelConfig, ServerConfig
from clothing.model_server.server import ModelServer
from clothing.proto.tensorflow_serving.apis import (
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from tests.fixtures import build_test_model

MODEL = "clothing-model"


class Running:
    def __init__(self, server: ModelServer, channel: grpc.aio.Channel) -> None:
        self.server = server
        self.channel = channel
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]
        self.models = model_service_pb2_grpc.ModelServiceStub(channel)  # type: ignore[no-untyped-call]

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.server.rest_port}"


ServerFactory = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def base_path(tmp_path: Path) -> Path:
    base = tmp_path / MODEL
    build_test_model(base / "1")
    return base


@pytest.fixture
def serve() -> ServerFactory:
    """Start an in-process server; keyword arguments override ServerConfig fields."""

    @asynccontextmanager
    async def start(models: tuple[ModelConfig, ...], **overrides: Any) -> AsyncIterator[Running]:
        config = ServerConfig(
            models=models,
            host="127.0.0.1",
            port=0,
            rest_api_port=0,
            poll_wait_seconds=0.1,
            shutdown_grace_seconds=5,
        )
        config = replace(config, **overrides)
        server = ModelServer(config)
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        try:
            yield Running(server, channel)
        finally:
            await channel.close()
            await server.stop()

    return start
