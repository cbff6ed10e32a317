"""Log lines as JSON or text, and the rules for request ids and trace contexts."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from clothing import logs, request_context
from clothing.request_context import RequestRecord


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _emit(log_format: str, *, error: bool = False) -> str:
    stream = io.StringIO()
    logs.configure(log_format, "info", stream)
    log = logging.getLogger("clothing.test")
    log.info("plain %s", "message")
    logs.log_access(log, "GET /x 200", {"request_id": "r-1", "stages_ms": {"fetch": 1.5}})
    if error:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            log.exception("failed")
    return stream.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_json_is_one_object_per_line_with_the_record_s_fields() -> None:
    lines = _emit("json", error=True).splitlines()
    assert len(lines) == 3
    plain, access, failed = (json.loads(line) for line in lines)
    assert set(plain) == {"time", "level", "logger", "message"}
    assert plain["message"] == "plain message"
    assert plain["level"] == "info"
    assert plain["logger"] == "clothing.test"
    assert plain["time"].endswith("Z")
    assert access["request_id"] == "r-1"
    assert access["stages_ms"] == {"fetch": 1.5}
    assert "ValueError: boom" in failed["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_text_is_for_people() -> None:
    lines = _emit("text").splitlines()
    assert lines[0].endswith(" INFO clothing.test: plain message")
    assert lines[1].endswith("GET /x 200 request_id=r-1 stages_ms=fetch:1.5")


@pytest.mark.usefixtures("restore_logging")
def test_uvicorn_s_records_take_the_same_shape() -> None:
    stream = io.StringIO()
    logs.configure("json", "info", stream)
    logging.getLogger("uvicorn.error").warning("Started server process")
    assert json.loads(stream.getvalue())["logger"] == "uvicorn.error"


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        logs.formatter("xml")


@pytest.mark.parametrize("command", ["gateway", "model-server"])
def test_the_format_comes_from_the_environment(command: str) -> None:
    variable = {"gateway": "GATEWAY_LOG_FORMAT", "model-server": "MODEL_SERVER_LOG_FORMAT"}
    code = (
        "from clothing.cli import build_parser;"
        f"args = build_parser({{'{command}'}}).parse_args(['{command}']);"
        "print(args.log_format)"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, variable[command]: "json"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert shown.strip() == "json"


@pytest.mark.parametrize(
    "offered", ["abc", "order-42/a.b", "x" * 128, "!#$%&'()*+,-./:;<=>?@[]^_`{|}~"]
)
def test_well_formed_ids_are_kept(offered: str) -> None:
    assert request_context.request_id(offered) == offered


@pytest.mark.parametrize("offered", [None, "", "x" * 129, "a b", 'a"b', "a\\b", "é", "a\nb"])
def test_other_ids_are_replaced(offered: str | None) -> None:
    made = request_context.request_id(offered)
    assert made != offered
    assert len(made) == 32


@pytest.mark.parametrize(
    "offered",
    [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    ],
)
def test_valid_traceparents_pass_on(offered: str) -> None:
    assert request_context.traceparent(offered) == offered


@pytest.mark.parametrize(
    "offered",
    [
        None,
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
    ],
)
def test_invalid_traceparents_start_a_new_trace(offered: str | None) -> None:
    made = request_context.traceparent(offered)
    assert made != offered
    assert request_context.valid_traceparent(made)
    assert made.endswith("-00")  # not sampled


def test_a_record_from_headers_takes_the_first_of_each_and_sends_both() -> None:
    record = RequestRecord.from_asgi(
        [(b"x-request-id", b"one"), (b"x-request-id", b"two"), (b"accept", b"*/*")]
    )
    assert record.request_id == "one"
    assert dict(record.metadata())["x-request-id"] == "one"
    assert request_context.valid_traceparent(dict(record.metadata())["traceparent"])


def test_notes_go_to_the_current_request_only() -> None:
    request_context.note(ignored=True)  # outside a request: nothing to note on
    record = RequestRecord("id", request_context.traceparent(None))
    token = request_context.CURRENT.set(record)
    try:
        request_context.note(model="m")
        assert request_context.outgoing_metadata() == record.metadata()
    finally:
        request_context.CURRENT.reset(token)
    assert record.fields == {"model": "m"}
    assert request_context.outgoing_metadata() is None


@pytest.mark.parametrize("command", ["gateway", "model-server"])
def test_a_bad_format_in_the_environment_stops_the_start_with_a_message(command: str) -> None:
    variable = {"gateway": "GATEWAY_LOG_FORMAT", "model-server": "MODEL_SERVER_LOG_FORMAT"}
    result = subprocess.run(
        [sys.executable, "-m", "clothing.cli", command, "--model_name=m"]
        if command == "model-server"
        else [sys.executable, "-m", "clothing.cli", command],
        env={**os.environ, variable[command]: "xml"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "log format must be one of text, json, got 'xml'" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
