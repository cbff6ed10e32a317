"""`docker compose up` as a user runs it: photos in, the right classes out, ports, drain."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.bundled import bundled_side
from tests.environment import dataset_present

from . import engine, stacks
from .photos import in_process_labels, sample_photos

pytestmark = pytest.mark.slow
TFS_CLIENT = engine.ROOT / "tests" / "model_server" / "tfs_client.py"


@pytest.fixture(scope="module")
def stack(
    images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[engine.ComposeProject]:
    with stacks.compose_stack(images, tmp_path_factory.mktemp("compose")) as project:
        yield project


def url(stack: engine.ComposeProject, service: str, port: int) -> str:
    return f"http://127.0.0.1:{engine.published_port(stack.container(service), port)}"


def test_photos_get_the_classes_of_the_in_process_path(stack: engine.ComposeProject) -> None:
    photos = sample_photos()
    gateway = url(stack, "gateway", 9696)
    answers = []
    with httpx.Client(timeout=60) as client:
        for photo in photos[: len(photos) // 2]:  # one at a time, by base64
            response = client.post(
                f"{gateway}/predict", json={"image_b64": base64.b64encode(photo).decode()}
            )
            assert response.status_code == 200, response.text
            answers.append(response.json()["label"])
        for photo in photos[len(photos) // 2 :]:  # one at a time, by upload
            response = client.post(
                f"{gateway}/predict", files={"file": ("photo.jpg", photo, "image/jpeg")}
            )
            assert response.status_code == 200, response.text
            answers.append(response.json()["label"])
    assert answers == in_process_labels(photos)
    if dataset_present():
        # The bundled model scores 0.90 on validation: most photos get their own class.
        assert len(set(answers)) >= 5


def test_web_page_is_served(stack: engine.ComposeProject) -> None:
    gateway = url(stack, "gateway", 9696)
    page = httpx.get(f"{gateway}/", timeout=30)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert httpx.get(f"{gateway}/static/app.js", timeout=30).status_code == 200


def test_model_server_rest_port_from_the_host(stack: engine.ComposeProject) -> None:
    rest = url(stack, "model-server", 8501)
    status = httpx.get(f"{rest}/v1/models/clothing-model", timeout=30).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    side = bundled_side()
    instance = np.zeros((side, side, 3), np.uint8).tolist()
    response = httpx.post(
        f"{rest}/v1/models/clothing-model:predict", json={"instances": [instance]}, timeout=60
    )
    assert response.status_code == 200, response.text
    (row,) = response.json()["predictions"]
    assert sum(row) == pytest.approx(1.0, abs=1e-4)


def test_model_server_grpc_port_with_a_tf_serving_client(stack: engine.ComposeProject) -> None:
    port = engine.published_port(stack.container("model-server"), 8500)
    side = bundled_side()
    result = subprocess.run(
        [
            sys.executable,
            str(TFS_CLIENT),
            "predict",
            f"127.0.0.1:{port}",
            "clothing-model",
            str(side),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["shape"] == [2, 10]
    assert answer["input_shape"][1:] == [side, side, 3]
    assert answer["model_spec"][0] == "clothing-model"


# What a request sent after the listener closed gets through Docker's port proxy.
NOT_SERVED = (
    "refused",
    "ReadError: [Errno 104] Connection reset by peer",
    "RemoteProtocolError: Server disconnected without sending a response.",
)


class Traffic:
    """Batch requests in a loop, each on a new connection, until told to stop."""

    def __init__(self, gateway: str, body: dict[str, list[str]]) -> None:
        self.gateway, self.body = gateway, body
        self.outcomes: list[tuple[float, float, str]] = []  # start, end, outcome
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with httpx.Client(timeout=60) as client:
                    response = client.post(f"{self.gateway}/predict/batch", json=self.body)
                outcome = str(response.status_code)
            except httpx.ConnectError:
                outcome = "refused"  # the listener was closed: the request was never accepted
                self.stop.wait(0.05)
            except httpx.HTTPError as error:
                outcome = f"{type(error).__name__}: {error}"
            self.outcomes.append((started, time.monotonic(), outcome))


def test_down_drains_a_request_in_flight_and_both_exit_0(
    stack: engine.ComposeProject, tmp_path: Path
) -> None:
    """Last in this module: it takes the stack down."""
    photos = sample_photos(per_class=2)[:16]
    body = {"images_b64": [base64.b64encode(photo).decode() for photo in photos]}
    traffic = Traffic(url(stack, "gateway", 9696), body)
    ids = {service: stack.container(service) for service in ("gateway", "model-server")}
    events = subprocess.Popen(
        [
            "docker", "events", "--format", "{{json .}}",
            "--filter", "type=container", "--filter", "event=die",
            *(arg for cid in ids.values() for arg in ("--filter", f"container={cid}")),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    workers = [threading.Thread(target=traffic.run) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        engine.wait_for(lambda: any(o[2] == "200" for o in traffic.outcomes), 60, "a first answer")
        down_at = time.monotonic()
        stack.run("down", "--timeout", "30", timeout=120)
        finished_at = time.monotonic()
    finally:
        traffic.stop.set()
        for worker in workers:
            worker.join(timeout=90)
        time.sleep(1)
        events.terminate()
    died = [json.loads(line) for line in events.communicate(timeout=30)[0].splitlines()]
    exit_codes = {event["id"]: event["Actor"]["Attributes"]["exitCode"] for event in died}
    assert {cid: exit_codes.get(cid) for cid in ids.values()} == dict.fromkeys(ids.values(), "0")
    # Every request sent before `down` is answered. Later ones may find the listener
    # closed; through Docker's port proxy that shows as a reset or an empty answer.
    before = [o for o in traffic.outcomes if o[0] < down_at]
    assert all(o[2] == "200" for o in before), before
    in_flight = [o for o in before if o[1] > down_at]
    assert in_flight, "no request was in flight when down began"
    after = [o for o in traffic.outcomes if o[0] >= down_at]
    assert all(o[2] == "200" or o[2] in NOT_SERVED for o in after), after
    assert finished_at - down_at < 30, "a server waited for SIGKILL"
