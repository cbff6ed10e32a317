"""One request id and trace context, from the client through both tiers' JSON logs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.images import jpeg
from tests.observability.stack import Stack, access_lines, both_tiers, json_lines, wait_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with both_tiers(tmp_path_factory.mktemp("ids") / "clothing-model") as running:
        yield running


def _upload(stack: Stack, headers: dict[str, str], image: bytes | None = None) -> httpx.Response:
    files = {"file": ("a.jpg", jpeg() if image is None else image, "image/jpeg")}
    return httpx.post(f"{stack.gateway.url}/predict", files=files, headers=headers, timeout=10)


def _line(log: Any, tier: str, request_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        lines = [e for e in access_lines(log(), tier) if e["request_id"] == request_id]
        return lines[0] if lines else None

    return dict(wait_for(found, 10.0, f"the {tier}'s access line for {request_id}"))


def test_a_client_s_id_and_trace_reach_both_tiers_logs(stack: Stack) -> None:
    answer = _upload(stack, {"X-Request-ID": "order-42/a.b", "traceparent": TRACEPARENT})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"] == "order-42/a.b"

    gateway = _line(stack.gateway.log, "gateway", "order-42/a.b")
    assert gateway["route"] == "/predict"
    assert gateway["status"] == 200
    assert gateway["trace_id"] == TRACE_ID
    assert gateway["model"] == "clothing-model"
    assert gateway["model_version"] == 1
    assert set(gateway["stages_ms"]) == {"fetch", "preprocess", "inference", "total"}
    assert gateway["image_bytes"] == len(jpeg())
    assert gateway["client"] == "127.0.0.1"
    assert {"time", "level", "logger", "message", "latency_ms"} <= set(gateway)

    model_server = _line(stack.model_server.log, "model_server", "order-42/a.b")
    assert model_server["route"] == "Predict"
    assert model_server["status"] == "OK"
    assert model_server["trace_id"] == TRACE_ID
    assert model_server["model"] == "clothing-model"
    assert model_server["model_version"] == "1"


@pytest.mark.parametrize(
    "offered",
    [None, "x" * 129, "has space", 'quote"d', "tab\there"],
    ids=["none", "too-long", "space", "quote", "control"],
)
def test_a_missing_or_malformed_id_is_replaced_by_a_generated_one(
    stack: Stack, offered: str | None
) -> None:
    headers = {} if offered is None else {"X-Request-ID": offered}
    answer = _upload(stack, headers)
    assert answer.status_code == 200, answer.text
    generated = answer.headers["x-request-id"]
    assert GENERATED.fullmatch(generated), generated
    gateway = _line(stack.gateway.log, "gateway", generated)
    model_server = _line(stack.model_server.log, "model_server", generated)
    # A fresh trace, the same in both tiers.
    assert gateway["trace_id"] == model_server["trace_id"] != TRACE_ID


def test_an_error_body_names_the_request_and_the_log_its_code(stack: Stack) -> None:
    answer = _upload(stack, {"X-Request-ID": "bad-image-1"}, image=b"not an image at all")
    assert answer.status_code == 400
    assert answer.json()["error"]["request_id"] == "bad-image-1"
    assert answer.headers["x-request-id"] == "bad-image-1"
    gateway = _line(stack.gateway.log, "gateway", "bad-image-1")
    assert gateway["status"] == 400
    assert gateway["code"] == "not_an_image"


def test_a_refusal_is_logged_with_its_code(stack: Stack) -> None:
    answer = httpx.post(
        f"{stack.gateway.url}/predict",
        content=b"x" * 20_000_000,
        headers={"X-Request-ID": "too-big-1"},
        timeout=10,
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["request_id"] == "too-big-1"
    assert _line(stack.gateway.log, "gateway", "too-big-1")["code"] == "too_large"


def test_the_model_server_s_rest_api_takes_and_returns_the_id(stack: Stack) -> None:
    url = f"{stack.model_server.rest_url}/v1/models/clothing-model"
    answer = httpx.get(url, headers={"X-Request-ID": "rest-7"}, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "rest-7"
    line = _line(stack.model_server.log, "model_server", "rest-7")
    assert line["transport"] == "rest"
    assert line["status"] == 200
    without = httpx.get(url, timeout=10)
    assert GENERATED.fullmatch(without.headers["x-request-id"])


def test_every_line_of_both_logs_is_one_json_object(stack: Stack) -> None:
    for log in (stack.gateway.log(), stack.model_server.log()):
        entries = json_lines(log)
        assert entries
        for entry in entries:
            assert {"time", "level", "logger", "message"} <= set(entry), entry


def test_no_line_shows_what_an_image_holds(stack: Stack) -> None:
    marker = b"SECRET-PIXELS-7f3a"
    _upload(stack, {"X-Request-ID": "content-1"}, image=jpeg() + marker)
    _line(stack.gateway.log, "gateway", "content-1")
    assert marker.decode() not in stack.gateway.log()
    assert marker.decode() not in stack.model_server.log()
