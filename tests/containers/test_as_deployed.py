"""Each image run as deploy/k8s/base runs it, then fed the hostile cases of tests/hardening.

Non-root, read-only root filesystem with only the declared emptyDir (as tmpfs),
capabilities dropped, no privilege escalation, and the manifests' CPU and memory
limits (tests/containers/deployed.py reads all of it from the rendered YAML).
Under those limits every hostile request gets a clean error or a correct answer,
no container is OOM-killed or restarted, and the next good request is served.
The payloads are tests/hardening's own (bombs.py, helpers.py), and the caps the
cases probe are read from the servers' own parsers, so both follow any change there.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from unittest import mock

import grpc
import httpx
import numpy as np
import pytest

from clothing import cgroup
from clothing.cli import build_parser
from clothing.gateway.cli import settings_from_args
from clothing.gateway.imaging import decode_bytes
from clothing.processes import poll_until_ok
from tests.bundled import bundled_side
from tests.hardening import bombs
from tests.hardening.helpers import images, predict_request, prediction_stub
from tests.hardening.test_gateway_memory import CASES as MEMORY_CASES
from tests.hardening.test_gateway_memory import POD_DECODE_BUDGET
from tests.images import encode, noise_png, solid

from . import engine
from .deployed import DeployedContainer, deployed
from .photos import sample_photos

pytestmark = pytest.mark.slow


@dataclass
class Running:
    """A container started with the manifest's settings, published on loopback."""

    id: str
    spec: DeployedContainer
    ports: dict[int, int]

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{self.ports[port]}"

    def assert_unharmed(self) -> None:
        state = engine.inspect(self.id)
        assert not state["State"]["OOMKilled"], f"{self.spec.name} was OOM-killed"
        assert state["RestartCount"] == 0, f"{self.spec.name} restarted:\n{engine.logs(self.id)}"
        assert state["State"]["Running"], engine.logs(self.id)


def start(
    image: str, spec: DeployedContainer, network: str, name: str, env: dict[str, str]
) -> Running:
    ports = [int(arg.split("=")[1]) for arg in spec.args if arg.split("=")[0].endswith("port")]
    publish = [option for port in ports for option in ("-p", f"127.0.0.1::{port}")]
    environment = [option for k, v in {**spec.env, **env}.items() for option in ("-e", f"{k}={v}")]
    cid = engine.docker(
        "run", "--detach", "--name", name, "--network", network,
        *spec.options, *publish, *environment, image, *spec.args,
    ).stdout.strip()  # fmt: skip
    return Running(cid, spec, {port: engine.published_port(cid, port) for port in ports})


def wait_ready(running: Running, url: str) -> None:
    failure = poll_until_ok(url, None, timeout=120)
    if failure is not None:
        pytest.fail(f"{running.spec.name} {failure}:\n{engine.logs(running.id)}")


@pytest.fixture(scope="module")
def network(images: dict[str, str]) -> Iterator[str]:
    name = f"clothing-test-{engine.RUN_ID}-deployed"
    engine.docker("network", "create", name)
    yield name
    engine.docker("network", "rm", name, check=False)


@contextlib.contextmanager
def running_model_server(image: str, network: str, name: str) -> Iterator[Running]:
    running = start(image, deployed("model-server"), network, name, {})
    try:
        wait_ready(running, f"{running.url(8501)}/readyz")
        yield running
    finally:
        engine.docker("rm", "--force", running.id, check=False)


@pytest.fixture(scope="module")
def model_server_container(images: dict[str, str], network: str) -> Iterator[Running]:
    """Behind the gateways of this module."""
    name = f"clothing-test-{engine.RUN_ID}-model-server"
    with running_model_server(images["model-server"], network, name) as running:
        yield running


@pytest.fixture
def lone_model_server(images: dict[str, str], network: str) -> Iterator[Running]:
    """A model server of its own for one case, so that a case that kills one harms no other."""
    name = f"clothing-test-{engine.RUN_ID}-lone-model-server"
    with running_model_server(images["model-server"], network, name) as running:
        yield running


@pytest.fixture
def gateway(
    images: dict[str, str], network: str, model_server_container: Running
) -> Iterator[Running]:
    """A gateway of its own for one case, in front of the module's model server."""
    spec = deployed("gateway")
    # The manifest names the headless Service; here the model server's container name.
    target = {
        "TF_SERVING_HOST": f"dns:///{engine.inspect(model_server_container.id)['Name'][1:]}:8500"
    }
    name = f"clothing-test-{engine.RUN_ID}-gateway"
    running = start(images["gateway"], spec, network, name, target)
    try:
        wait_ready(running, f"{running.url(9696)}/readyz")
        yield running
    finally:
        engine.docker("rm", "--force", running.id, check=False)


def test_containers_run_with_the_manifests_restrictions(
    model_server_container: Running, gateway: Running
) -> None:
    for running in (model_server_container, gateway):
        host = engine.inspect(running.id)["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["Memory"] == running.spec.memory_limit
        assert host["NanoCpus"] == int(running.spec.cpu_limit * 1e9)
        user = engine.docker("exec", running.id, "id", "-u").stdout.strip()
        assert user != "0"


# --- gateway ---------------------------------------------------------------


@dataclass(frozen=True)
class GatewayCaps:
    max_batch: int
    max_image_bytes: int
    max_pixels: int
    max_body_bytes: int
    max_batch_body_bytes: int
    decode_budget: int


def gateway_caps() -> GatewayCaps:
    """The caps the deployed gateway runs with: its args, under the manifest's limits (the
    caps follow the container's memory and CPUs), computed by the gateway's own code."""
    spec = deployed("gateway")
    with (
        mock.patch.object(cgroup, "memory_limit", return_value=spec.memory_limit),
        mock.patch.object(cgroup, "available_cpus", return_value=math.ceil(spec.cpu_limit)),
    ):
        # Defaults (the decode workers) are taken when the parser is built: inside too.
        args = build_parser({"gateway"}).parse_args(["gateway", *spec.args])
        settings = settings_from_args(args)
        return GatewayCaps(
            max_batch=settings.max_batch,
            max_image_bytes=settings.max_image_bytes,
            max_pixels=settings.max_pixels,
            max_body_bytes=settings.max_body_bytes,
            max_batch_body_bytes=settings.max_batch_body_bytes,
            decode_budget=settings.decode_budget,
        )


def good_prediction(gateway: Running) -> None:
    photo = sample_photos(per_class=1)[0]
    answer = httpx.post(
        f"{gateway.url(9696)}/predict",
        json={"image_b64": base64.b64encode(photo).decode()},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text


def largest_png(caps: GatewayCaps) -> bytes:
    """A real RGB PNG as large in pixels as the pixel cap and the decode budget allow (flat
    colour, so it stays small)."""
    side = int(caps.max_pixels**0.5)
    image = solid((120, 30, 200), (side, side))
    while decode_bytes(image) > caps.decode_budget:
        side -= 16
        image = solid((120, 30, 200), (side, side))
    data = encode(image, "PNG", optimize=True)
    assert len(data) <= caps.max_image_bytes
    return data


def send_announced_over_cap(url: str, cap: int, path: str = "/predict") -> int:
    """Headers announcing a body one byte over the cap, then a few bytes: the status."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {cap + 1}\r\n\r\n".encode()
            + b'{"image_b64": "AAAA'
        )
        status_line = connection.recv(4096).split(b"\r\n", 1)[0]
    return int(status_line.split()[1])


def stream_over_cap(url: str, cap: int) -> int:
    chunk = b"A" * (1 << 20)

    def body() -> Iterator[bytes]:
        yield b'{"image_b64": "'
        for _ in range(cap // len(chunk) + 2):
            yield chunk

    try:
        answer = httpx.post(
            f"{url}/predict",
            content=body(),
            headers={"Content-Type": "application/json"},
            timeout=120,
        )
    except httpx.WriteError:
        return 413  # answered and closed before the client finished sending
    return answer.status_code


def gateway_cases() -> dict[str, Callable[[Running], None]]:
    def bomb(kind: str) -> Callable[[Running], None]:
        def case(gateway: Running) -> None:
            payload = base64.b64encode(bombs.BOMBS[kind]()).decode()
            answer = httpx.post(
                f"{gateway.url(9696)}/predict", json={"image_b64": payload}, timeout=60
            )
            assert answer.status_code == 413, answer.text
            assert answer.json()["error"]["code"] == "too_large"

        return case

    def announced_body(gateway: Running) -> None:
        assert send_announced_over_cap(gateway.url(9696), gateway_caps().max_body_bytes) == 413

    def streamed_body(gateway: Running) -> None:
        assert stream_over_cap(gateway.url(9696), gateway_caps().max_body_bytes) == 413

    def largest_allowed_batch(gateway: Running) -> None:
        caps = gateway_caps()
        image = base64.b64encode(largest_png(caps)).decode()
        answer = httpx.post(
            f"{gateway.url(9696)}/predict/batch",
            json={"images_b64": [image] * caps.max_batch},
            timeout=300,
        )
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert len(results) == caps.max_batch
        assert all(result.get("label") for result in results), results

    def largest_allowed_body(gateway: Running) -> None:
        """A full batch whose body is as large as the batch route accepts: each image as
        many bytes as its share allows (a real PNG, padded after its end, which decoders
        ignore)."""
        caps = gateway_caps()
        framing = 64 * caps.max_batch + 1024  # quotes, commas and the JSON key
        share = min(caps.max_image_bytes, (caps.max_batch_body_bytes - framing) // caps.max_batch)
        raw = share * 3 // 4  # base64 takes 4 bytes for every 3
        photo = noise_png()
        padded = base64.b64encode(photo + b"\0" * (raw - len(photo))).decode()
        body = json.dumps({"images_b64": [padded] * caps.max_batch}).encode()
        assert caps.max_batch_body_bytes - framing <= len(body) <= caps.max_batch_body_bytes
        answer = httpx.post(
            f"{gateway.url(9696)}/predict/batch",
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=300,
        )
        assert answer.status_code == 200, answer.text
        assert all(result.get("label") for result in answer.json()["results"])

    def large_decode(
        build: Callable[[int], bytes], side: int, status: int
    ) -> Callable[[Running], None]:
        """A real image that decodes to 100-320 MB (RGBA, 16-bit, palette, multi-frame): the
        status the in-process memory test expects for the pod's decode budget."""

        def case(gateway: Running) -> None:
            assert gateway_caps().decode_budget == POD_DECODE_BUDGET
            payload = base64.b64encode(build(side)).decode()
            answer = httpx.post(
                f"{gateway.url(9696)}/predict", json={"image_b64": payload}, timeout=120
            )
            assert answer.status_code == status, answer.text

        return case

    cases = {f"bomb-{kind}": bomb(kind) for kind in sorted(bombs.BOMBS)}
    cases.update(
        {
            f"decode-{name}-{side}": large_decode(build, side, status)
            for name, build, side, status in MEMORY_CASES
        }
    )
    cases["largest-allowed-body"] = largest_allowed_body
    cases["body-announced-over-cap"] = announced_body
    cases["body-streamed-over-cap"] = streamed_body
    cases["largest-allowed-batch"] = largest_allowed_batch
    return cases


GATEWAY_CASES = gateway_cases()


@pytest.mark.parametrize("case", sorted(GATEWAY_CASES))
def test_gateway_under_its_limits(case: str, gateway: Running) -> None:
    try:
        GATEWAY_CASES[case](gateway)
    finally:  # an OOM kill or a restart is the first thing to report
        gateway.assert_unharmed()
    good_prediction(gateway)


# --- model server ----------------------------------------------------------


def model_server_args() -> argparse.Namespace:
    args = deployed("model-server").args
    return build_parser({"model-server"}).parse_args(["model-server", *args])


def max_message_bytes() -> int:
    return int(model_server_args().max_message_bytes)


def predict(server: Running, batch: np.ndarray) -> grpc.StatusCode:
    limit = max_message_bytes() + (1 << 20)  # the client must not be the one refusing
    options = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
    with grpc.insecure_channel(f"127.0.0.1:{server.ports[8500]}", options=options) as channel:
        try:
            prediction_stub(channel).Predict(predict_request(batch), timeout=300)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def model_server_cases() -> dict[str, Callable[[Running], None]]:
    side = bundled_side()
    row = side * side * 3

    def over_the_message_limit(server: Running) -> None:
        rows = max_message_bytes() // row + 1
        assert predict(server, images(rows, size=side)) == grpc.StatusCode.RESOURCE_EXHAUSTED

    def largest_allowed_predict(server: Running) -> None:
        by_bytes = (max_message_bytes() - 64 * 1024) // row
        rows = min(by_bytes, int(model_server_args().max_batch_rows))
        assert predict(server, images(rows, size=side)) == grpc.StatusCode.OK

    def one_row_over_the_row_limit(server: Running) -> None:
        rows = int(model_server_args().max_batch_rows) + 1
        assert predict(server, images(rows, size=side)) == grpc.StatusCode.INVALID_ARGUMENT

    def rest_body_over_the_limit(server: Running) -> None:
        status = send_announced_over_cap(
            server.url(8501), max_message_bytes(), "/v1/models/clothing-model:predict"
        )
        assert status == 413

    return {
        "grpc-over-the-message-limit": over_the_message_limit,
        "grpc-largest-allowed-predict": largest_allowed_predict,
        "grpc-one-row-over-the-row-limit": one_row_over_the_row_limit,
        "rest-body-over-the-limit": rest_body_over_the_limit,
    }


MODEL_SERVER_CASES = model_server_cases()


@pytest.mark.parametrize("case", sorted(MODEL_SERVER_CASES))
def test_model_server_under_its_limits(case: str, lone_model_server: Running) -> None:
    try:
        MODEL_SERVER_CASES[case](lone_model_server)
    finally:
        lone_model_server.assert_unharmed()
    assert predict(lone_model_server, images(1, size=bundled_side())) == grpc.StatusCode.OK
