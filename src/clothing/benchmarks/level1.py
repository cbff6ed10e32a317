"""Level 1, tensor in and probabilities out: ONNX Runtime in process against gRPC.

The ceiling is what ONNX Runtime itself does in this process at its best batch size
(images/s); nothing served can beat it on the same cores. The bare ``session.run`` at
batch 1 is the latency floor the model server's concurrency-1 p50 is compared with.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from clothing.serving_layout import ModelMetadata

CEILING_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Ceiling:
    """Images/s of in-process ONNX Runtime per batch size, and the best of them."""

    per_batch: dict[int, float]

    @property
    def best_batch(self) -> int:
        return max(self.per_batch, key=lambda size: self.per_batch[size])

    @property
    def images_per_s(self) -> float:
        return self.per_batch[self.best_batch]


def sample_pixels(info: ModelMetadata, count: int, seed: int = 0) -> np.ndarray:
    """``count`` seeded uint8 images of the model's size, ``[count, H, W, 3]``."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, info.height, info.width, 3), dtype=np.uint8)


def new_session(info: ModelMetadata, providers: Sequence[str]) -> Any:
    """A session with a thread per core whose threads sleep instead of spinning.

    Spinning threads wait for each other by burning their time slice: with other
    processes on the cores one of them is often descheduled, and on this 2-CPU machine
    at a load average of 10 a spinning session ran 24 images/s against 41 without
    (int8, batch 8, interleaved). A ceiling that collapses under sharing is no ceiling.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(info.model_file), options, providers=list(providers))


def measure_ceiling(
    session: Any,
    info: ModelMetadata,
    *,
    batch_sizes: Sequence[int] = CEILING_BATCH_SIZES,
    seconds_per_size: float = 2.0,
    min_runs: int = 3,
) -> Ceiling:
    """Run each batch size for about ``seconds_per_size`` after one warm-up run."""
    per_batch: dict[int, float] = {}
    for size in batch_sizes:
        feed = {info.input_name: info.to_model_input(sample_pixels(info, size, seed=size))}
        session.run([info.output_name], feed)
        runs = 0
        started = time.perf_counter()
        while runs < min_runs or time.perf_counter() - started < seconds_per_size:
            session.run([info.output_name], feed)
            runs += 1
        per_batch[size] = runs * size / (time.perf_counter() - started)
    return Ceiling(per_batch)


def measure_bare_run(session: Any, info: ModelMetadata, *, runs: int = 50) -> list[float]:
    """Latencies (seconds) of ``session.run`` on one image, after a warm-up."""
    feed = {info.input_name: info.to_model_input(sample_pixels(info, 1))}
    for _ in range(3):
        session.run([info.output_name], feed)
    latencies = []
    for _ in range(runs):
        began = time.perf_counter()
        session.run([info.output_name], feed)
        latencies.append(time.perf_counter() - began)
    return latencies


class GrpcPredictor:
    """Sends one image per ``Predict`` call to a model server, uint8 via tensor_content."""

    def __init__(self, address: str, model_name: str, info: ModelMetadata, images: int = 8) -> None:
        import grpc

        from clothing.proto.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
        from clothing.tensors import from_numpy

        self._channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ],
        )
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._info = info
        pixels = sample_pixels(info, images)
        # Built once: the client's own protobuf work stays out of the server's figures.
        self._requests = []
        for index in range(images):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = "serving_default"
            request.inputs[info.input_name].CopyFrom(from_numpy(pixels[index : index + 1]))
            self._requests.append(request)

    def request_for(self, index: int) -> Any:
        return self._requests[index % len(self._requests)]

    async def send(self, index: int) -> None:
        response = await self._stub.Predict(self.request_for(index), timeout=60)
        output = response.outputs[self._info.output_name]
        rows = output.tensor_shape.dim[0].size if output.tensor_shape.dim else 0
        if rows != 1:
            raise RuntimeError(f"expected 1 row of probabilities, got shape {output.tensor_shape}")

    async def send_tensor(self, request: Any) -> Any:
        return await self._stub.Predict(request, timeout=60)

    async def close(self) -> None:
        await self._channel.close()
