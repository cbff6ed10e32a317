"""The memory-heavy hostile cases, in the images run with the kind overlay's limits.

The kind overlay (what most users run) gives the gateway 384 MiB and half a CPU
(a 96 MiB decode budget, one worker) and the model server 1 GiB: tighter than
the base's. Each case gets a clean answer (200 within the budget, 413 or 400
past it), no container is OOM-killed or restarted, and the next photo is served.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Iterator

import grpc
import httpx
import pytest

from tests.bundled import bundled_side
from tests.hardening import bombs
from tests.hardening.helpers import images, predict_request, prediction_stub
from tests.hardening.test_gateway_memory import CASES as MEMORY_CASES
from tests.hardening.test_model_server_intake import _hostile_predict

from . import engine
from .deployed import deployed
from .test_as_deployed import Running, good_prediction, network, start, wait_ready

pytestmark = pytest.mark.slow
KIND = "overlays/kind"
__all__ = ["network"]  # the module-scoped fixture, shared


@pytest.fixture(scope="module")
def kind_model_server(images: dict[str, str], network: str) -> Iterator[Running]:
    name = f"clothing-test-{engine.RUN_ID}-kind-model-server"
    running = start(images["model-server"], deployed("model-server", KIND), network, name, {})
    try:
        wait_ready(running, f"{running.url(8501)}/readyz")
        yield running
    finally:
        engine.docker("rm", "--force", running.id, check=False)


@pytest.fixture(scope="module")
def kind_gateway(
    images: dict[str, str], network: str, kind_model_server: Running
) -> Iterator[Running]:
    target = {"TF_SERVING_HOST": f"dns:///{engine.inspect(kind_model_server.id)['Name'][1:]}:8500"}
    name = f"clothing-test-{engine.RUN_ID}-kind-gateway"
    running = start(images["gateway"], deployed("gateway", KIND), network, name, target)
    try:
        wait_ready(running, f"{running.url(9696)}/readyz")
        yield running
    finally:
        engine.docker("rm", "--force", running.id, check=False)


CASES: dict[str, Callable[[], bytes]] = {
    f"{name}-{side}": functools.partial(build, side) for name, build, side, _ in MEMORY_CASES
}
CASES["repeated-scans"] = bombs.repeated_scans


@pytest.mark.parametrize("case", sorted(CASES))
def test_gateway_under_the_kind_limits(case: str, kind_gateway: Running) -> None:
    assert kind_gateway.spec.memory_limit == 384 * 2**20
    payload = base64.b64encode(CASES[case]()).decode()
    try:
        answer = httpx.post(
            f"{kind_gateway.url(9696)}/predict", json={"image_b64": payload}, timeout=120
        )
        print(f"{case}: {answer.status_code}")
        assert answer.status_code in (200, 400, 413), answer.text
    finally:
        kind_gateway.assert_unharmed()
    good_prediction(kind_gateway)


def test_model_server_under_the_kind_limits(kind_model_server: Running) -> None:
    assert kind_model_server.spec.memory_limit == 2**30
    address = f"127.0.0.1:{kind_model_server.ports[8500]}"
    try:
        with grpc.insecure_channel(address) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                prediction_stub(channel).Predict(_hostile_predict(40, with_image=False), timeout=60)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            batch = images(1, size=bundled_side())
            good = prediction_stub(channel).Predict(predict_request(batch), timeout=60)
            assert len(good.outputs) >= 1
    finally:
        kind_model_server.assert_unharmed()
