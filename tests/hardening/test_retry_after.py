"""Fast regressions: Retry-After on the model server's 503/429 and a clean gateway exit."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from clothing.processes import free_port, wait_ready
from tests.fixtures import run_gateway, run_model_server

from .helpers import MODEL


def test_model_server_not_ready_answers_503_with_retry_after(tmp_path: Path) -> None:
    (tmp_path / MODEL).mkdir()  # no version yet: the model is not loaded
    with run_model_server(tmp_path / MODEL, wait_for_ready=False) as server:
        wait_ready(f"{server.rest_url}/healthz", server.process, 60)
        body = {"instances": [[[[0, 0, 0]]]]}
        answer = httpx.post(f"{server.rest_url}/v1/models/{MODEL}:predict", json=body, timeout=10)
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert "error" in answer.json()


def test_idle_gateway_exits_zero_on_sigterm() -> None:
    # Regression: uvicorn re-raised SIGTERM after its drain, so the exit code was -15.
    with run_gateway(f"127.0.0.1:{free_port()}", wait_for_ready=False) as gateway:
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(15) == 0, gateway.log()
