"""``clothing up`` starts both tiers; ``clothing predict`` talks to the gateway."""

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures import cli_command
from tests.images import jpeg, png_rgba

from .conftest import run_up

pytestmark = pytest.mark.slow


def predict(*args: str) -> subprocess.CompletedProcess[str]:
    command = cli_command("predict", *args)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def port_open(url: str) -> bool:
    try:
        httpx.get(url + "/healthz", timeout=1.0)
    except httpx.TransportError:
        return False
    return True


def test_up_serves_predict_and_stops_cleanly_on_sigterm(model_dir: Path, tmp_path: Path) -> None:
    photo = tmp_path / "shirt.png"
    photo.write_bytes(png_rgba())
    with run_up(model_dir, tmp_path) as up:
        answer = predict(str(photo), "--gateway", up.gateway_url)
        assert answer.returncode == 0, answer.stderr
        body = json.loads(answer.stdout)
        assert body["model"]["name"] == "clothing-model"
        assert len(body["predictions"]) == 10

        refused = predict("http://127.0.0.1:1/a.jpg", "--gateway", up.gateway_url)
        assert refused.returncode == 1
        assert json.loads(refused.stdout)["error"]["code"] == "address_refused"

        started = time.monotonic()
        up.process.send_signal(signal.SIGTERM)
        assert up.process.wait(30) == 0
        assert time.monotonic() - started < 20
        assert "Ready: open http://127.0.0.1:" in up.log()
    assert not port_open(up.gateway_url), "the gateway stopped with up"
    assert not port_open(up.rest_url), "the model server stopped with up"


def test_up_stops_on_ctrl_c(model_dir: Path, tmp_path: Path) -> None:
    with run_up(model_dir, tmp_path) as up:
        up.process.send_signal(signal.SIGINT)
        assert up.process.wait(30) == 0
    assert not port_open(up.gateway_url)


def test_up_without_a_model_explains(tmp_path: Path) -> None:
    command = cli_command("up", f"--model-base-path={tmp_path}")
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "no model at" in result.stderr


def test_predict_reports_missing_file_and_unreachable_gateway(tmp_path: Path) -> None:
    missing = predict(str(tmp_path / "nope.jpg"))
    assert missing.returncode == 2
    assert "neither a URL nor a file" in missing.stderr
    photo = tmp_path / "a.jpg"
    photo.write_bytes(jpeg())
    unreachable = predict(str(photo), "--gateway", "http://127.0.0.1:1")
    assert unreachable.returncode == 1
    assert "cannot reach" in unreachable.stderr
