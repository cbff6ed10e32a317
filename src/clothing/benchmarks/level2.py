"""Level 2, photo in and class JSON out: HTTP clients for every system.

Request bodies are built once per photo (JSON bytes), so the load generator spends
its CPU on sending, not on base64 and JSON encoding.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from clothing.benchmarks.photos import PhotoSet
from clothing.benchmarks.preprocess import gateway_input_spec
from clothing.serving_layout import ModelMetadata

PAYLOADS = ("b64", "url")
_JSON = {"content-type": "application/json"}


def request_bodies(photos: PhotoSet, payload: str, image_base_url: str | None) -> list[bytes]:
    """One JSON body per photo: ``{"image_b64": ...}`` or ``{"url": ...}``."""
    if payload == "b64":
        return [
            json.dumps({"image_b64": base64.b64encode(path.read_bytes()).decode()}).encode()
            for path in photos.paths()
        ]
    if payload == "url":
        if image_base_url is None:
            raise ValueError("URL payloads need the local image server")
        return [json.dumps({"url": f"{image_base_url}/{name}"}).encode() for name in photos.names]
    raise ValueError(f"unknown payload {payload!r}; choose from {PAYLOADS}")


class HttpClassifier:
    """``POST`` pre-built bodies to one system's predict URL, expecting 200 with JSON."""

    def __init__(self, url: str, bodies: list[bytes], concurrency: int) -> None:
        import httpx

        if not bodies:
            raise ValueError("no request bodies")
        self._url = url
        self._bodies = bodies
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(120.0),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    async def send(self, index: int) -> None:
        response = await self._client.post(
            self._url, content=self._bodies[index % len(self._bodies)], headers=_JSON
        )
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        if not response.content.startswith(b"{"):
            raise RuntimeError(f"not a JSON object: {response.text[:200]}")

    async def close(self) -> None:
        await self._client.aclose()


class DirectClassifier:
    """The gateway's work done by the client itself: decode with the gateway's code, then gRPC.

    Comparing the gateway's latency with this one's gives the gateway's own overhead
    (HTTP, JSON, base64, scheduling) on top of decoding and the model server.
    """

    def __init__(
        self, address: str, model_name: str, info: ModelMetadata, photos: PhotoSet
    ) -> None:
        import grpc

        from clothing.proto.tensorflow_serving.apis import prediction_service_pb2_grpc

        self._channel = grpc.aio.insecure_channel(
            address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        )
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._model_name = model_name
        self._info = info
        self._photos = [path.read_bytes() for path in photos.paths()]
        self._spec = gateway_input_spec(info)

    def _request(self, data: bytes) -> Any:
        from clothing.gateway.imaging import prepare
        from clothing.proto.tensorflow_serving.apis import predict_pb2
        from clothing.tensors import from_numpy

        row = prepare(data, self._spec)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self._model_name
        request.model_spec.signature_name = "serving_default"
        request.inputs[self._info.input_name].CopyFrom(from_numpy(row[None]))
        return request

    async def send(self, index: int) -> None:
        data = self._photos[index % len(self._photos)]
        request = await asyncio.to_thread(self._request, data)
        await self._stub.Predict(request, timeout=60)

    async def close(self) -> None:
        await self._channel.close()
