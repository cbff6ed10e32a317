"""Hot reload: versions come and go under load; a broken version never stops serving."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path

import grpc
import httpx
import numpy as np

from clothing.model_server.config import ModelConfig
from clothing.proto.tensorflow_serving.apis import get_model_status_pb2
from tests.fixtures import build_test_model, reference_probabilities
from tests.model_server.conftest import MODEL, Running, ServerFactory
from tests.model_server.test_grpc import images, request_for


async def wait_for(condition, limit: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def served_version(running: Running) -> int:
    response = await running.predictions.Predict(request_for(images(1)))
    return int(response.model_spec.version.value)


async def test_versions_added_and_removed_under_load_fail_no_request(
    serve: ServerFactory, base_path: Path
) -> None:
    async with serve((ModelConfig(MODEL, base_path),)) as running:
        failures: list[BaseException] = []
        seen: set[int] = set()
        stop = asyncio.Event()

        async def client() -> None:
            while not stop.is_set():
                try:
                    seen.add(await served_version(running))
                except grpc.aio.AioRpcError as error:
                    failures.append(error)

        clients = [asyncio.create_task(client()) for _ in range(3)]
        build_test_model(base_path / "2", seed=2)

        async def serves(version: int) -> bool:
            return await served_version(running) == version

        await wait_for(lambda: serves(2))
        build_test_model(base_path / "3", seed=3)
        await wait_for(lambda: serves(3))
        shutil.rmtree(base_path / "3")
        await wait_for(lambda: serves(2))
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*clients)
        assert failures == []
        assert {1, 2, 3} <= seen
        statuses = {v.version: v.state for v in running.server.dataplane.status(MODEL)}
        assert statuses == {1: "END", 2: "AVAILABLE", 3: "END"}


async def test_corrupt_version_is_reported_while_the_old_one_serves(
    serve: ServerFactory, base_path: Path
) -> None:
    async with serve((ModelConfig(MODEL, base_path),)) as running:
        broken = base_path / "2"
        broken.mkdir()
        (broken / "model.onnx").write_bytes(b"this is not an onnx model")

        async def reported() -> bool:
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = MODEL
            response = await running.models.GetModelStatus(request)
            return any(
                s.version == 2 and s.status.error_message for s in response.model_version_status
            )

        await wait_for(reported)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL
        response = await running.models.GetModelStatus(request)
        states = {s.version: s for s in response.model_version_status}
        assert states[2].state == get_model_status_pb2.ModelVersionStatus.END
        assert "failed to load version 2" in states[2].status.error_message
        assert states[1].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        for _ in range(5):
            assert await served_version(running) == 1
        async with httpx.AsyncClient(base_url=running.rest_url) as client:
            assert (await client.get("/readyz")).status_code == 200
            metrics = (await client.get("/metrics")).text
            assert (
                'model_server_model_loads_total{model="clothing-model",result="failure"} 1.0'
                in metrics
            )
            rest_status = (await client.get(f"/v1/models/{MODEL}/versions/2")).json()
            assert rest_status["model_version_status"][0]["status"]["error_code"] == "UNKNOWN"

        # Fixing the files retries the version.
        shutil.rmtree(broken)
        build_test_model(broken, seed=4)

        async def fixed() -> bool:
            return await served_version(running) == 2

        await wait_for(fixed)


async def test_removed_version_waits_for_in_flight_requests(
    serve: ServerFactory, base_path: Path
) -> None:
    """A request held inside version 1's runtime call spans the version's removal:
    version 2 serves new requests meanwhile, version 1 stays loaded (UNLOADING)
    until the held request is answered by it, and only then ends."""
    async with serve((ModelConfig(MODEL, base_path),)) as running:
        one = running.server.repository.model(MODEL).versions[1]
        assert one.backend is not None
        entered, release = threading.Event(), threading.Event()
        real_predict = one.backend.predict

        def held_predict(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            entered.set()
            assert release.wait(60), "the test never released the request"
            return real_predict(inputs)

        one.backend.predict = held_predict  # type: ignore[method-assign]
        batch = images(3)
        in_flight = asyncio.ensure_future(
            running.predictions.Predict(request_for(batch, version=1))
        )
        try:
            assert await asyncio.to_thread(entered.wait, 30), "the request never reached v1"
            build_test_model(base_path / "2", seed=5)
            shutil.rmtree(base_path / "1")

            async def removal_noticed() -> bool:
                return one.state == "UNLOADING"

            await wait_for(removal_noticed)
            # The overlap: the old version is still loaded for its request, the new one serves.
            assert one.inflight == 1
            assert one.backend is not None
            assert await served_version(running) == 2
            assert not in_flight.done()
        finally:
            release.set()
        response = await in_flight
        assert response.model_spec.version.value == 1
        got = np.asarray(response.outputs["probabilities"].float_val).reshape(3, 10)
        np.testing.assert_allclose(got, reference_probabilities(batch), rtol=1e-5, atol=1e-6)

        async def unloaded() -> bool:
            return one.state == "END"

        await wait_for(unloaded)
        assert one.backend is None
