"""The gateway across model server restarts and model version roll-outs."""

import asyncio
import base64
import time

import pytest

from clothing.gateway.imaging import InputSpec, prepare
from clothing.processes import free_port
from tests.fixtures import CLASSES, build_test_model, reference_probabilities, run_model_server
from tests.images import jpeg

from .conftest import gateway_client, settings_for

pytestmark = pytest.mark.slow
BODY = {"image_b64": base64.b64encode(jpeg((40, 90, 200))).decode()}


async def test_model_server_down_gives_503_fast_and_recovers_without_restart(model_dir):
    port = free_port()
    with run_model_server(model_dir, extra_args=[f"--port={port}"]) as server:
        settings = settings_for(server, tf_serving_host=f"127.0.0.1:{port}", grpc_deadline=3.0)
        async with gateway_client(settings) as client:
            assert (await client.post("/predict", json=BODY)).status_code == 200
            server.stop()

            started = time.monotonic()
            answer = await client.post("/predict", json=BODY)
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "model_unavailable"
            assert time.monotonic() - started < 1.5
            assert (await client.get("/readyz")).status_code == 503

            with run_model_server(model_dir, extra_args=[f"--port={port}"]):
                deadline = time.monotonic() + 10
                status = 0
                while time.monotonic() < deadline:
                    status = (await client.post("/predict", json=BODY)).status_code
                    if status == 200:
                        break
                    await asyncio.sleep(0.2)
                assert status == 200, "the gateway reconnects on its own"
                assert (await client.get("/readyz")).status_code == 200


async def test_a_new_version_with_another_input_and_classes_is_picked_up(tmp_path):
    base = tmp_path / "clothing-model"
    build_test_model(base / "1")
    poll = ["--file_system_poll_wait_seconds=0.2"]
    with run_model_server(base, extra_args=poll) as server:
        async with gateway_client(settings_for(server)) as client:
            first = await client.post("/predict", json=BODY)
            assert first.json()["model"]["version"] == 1

            renamed = tuple(name.upper() for name in CLASSES)
            build_test_model(base / "2", height=48, width=40, classes=renamed, seed=3)
            deadline = time.monotonic() + 20
            answer = first
            while time.monotonic() < deadline and answer.json()["model"]["version"] != 2:
                await asyncio.sleep(0.3)
                answer = await client.post("/predict", json=BODY)
                assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["model"] == {"name": "clothing-model", "version": 2}
            row = prepare(jpeg((40, 90, 200)), InputSpec("image", 48, 40))
            want = dict(
                zip(renamed, reference_probabilities(row[None], seed=3)[0].tolist(), strict=True)
            )
            assert body["label"] == max(want, key=want.__getitem__)
            for name, probability in body["predictions"].items():
                assert probability == pytest.approx(want[name], abs=1e-5)
            ready = await client.get("/readyz")
            assert ready.json()["model"]["version"] == 2
