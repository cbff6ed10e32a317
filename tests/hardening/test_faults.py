"""Faults under load, with real processes: a killed model server, new and corrupt
versions, and SIGTERM to each tier."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clothing.processes import free_port, wait_ready
from tests.fixtures import (
    build_test_model,
    model_server_command,
    run_gateway,
    run_model_server,
)

from .helpers import MODEL, wait_until
from .load import Load, Outcome, tally

DEADLINE = 2.0  # the gateway's gRPC deadline in these tests
# The load in these tests comes from one client: its rate limit is not what is tested.
NO_RATE_LIMIT = "--rate-limit=0"
# Time limits where time is the behaviour, with room for a busy 2-core machine.
RECOVERY_LIMIT = 4.0  # a restarted model server is used again within (reconnect backoff ~1.2 s)
REFUSAL_LIMIT = 2.0  # a closed port is refused at once


def wait_for(
    load: Load, condition: Callable[[list[Outcome]], bool], what: str, limit: float = 60.0
) -> None:
    """Until the outcomes so far satisfy ``condition``: fault windows are defined by
    what the clients saw, not by sleeps that a busy machine can outlast."""
    deadline = time.monotonic() + limit
    while not condition(list(load.outcomes)):
        assert time.monotonic() < deadline, f"{what} not seen within {limit} s"
        time.sleep(0.02)


def ok_count(since: float = 0.0, wanted: int = 8) -> Callable[[list[Outcome]], bool]:
    """At least ``wanted`` answers of 200 to requests sent from ``since`` on."""

    def enough(outcomes: list[Outcome]) -> bool:
        return sum(o.status == "200" and o.started >= since for o in outcomes) >= wanted

    return enough


def answered_long_ago(seconds: float) -> Callable[[list[Outcome]], bool]:
    """Some request sent more than ``seconds`` ago was answered 200: a signal sent now
    finds requests that started well before it (the tests' margin for a busy machine)."""

    def enough(outcomes: list[Outcome]) -> bool:
        return any(o.status == "200" and o.started < time.monotonic() - seconds for o in outcomes)

    return enough


def sent_after(moment: float, wanted: int = 3) -> Callable[[list[Outcome]], bool]:
    def enough(outcomes: list[Outcome]) -> bool:
        return sum(o.started > moment for o in outcomes) >= wanted

    return enough


@contextlib.contextmanager
def model_server_on(
    base: Path, grpc_port: int, rest_port: int, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A model server on fixed ports (so a restart comes back at the same address)."""
    command = model_server_command(
        grpc_port, rest_port, f"--model_name={MODEL}", f"--model_base_path={base}", *extra
    )
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(f"http://127.0.0.1:{rest_port}/readyz", process, 60.0)
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_model_server_killed_and_restarted_under_load(tmp_path: Path) -> None:
    base = tmp_path / MODEL
    build_test_model(base / "1")
    grpc_port, rest_port = free_port(), free_port()
    gateway_flags = (f"--grpc-deadline={DEADLINE}", "--ready-cache-seconds=0", NO_RATE_LIMIT)
    with (
        model_server_on(base, grpc_port, rest_port) as first,
        run_gateway(f"127.0.0.1:{grpc_port}", *gateway_flags) as gateway,
    ):
        load = Load(gateway.url, clients=6).start()
        wait_for(load, ok_count(), "answers before the kill")
        killed_at = time.monotonic()
        first.send_signal(signal.SIGKILL)
        first.wait()

        def noticed(outcomes: list[Outcome]) -> bool:
            return sum(o.status == "503" and o.started > killed_at for o in outcomes) >= 8

        wait_for(load, noticed, "503s while the model server is down")
        # The restarted server accepts gRPC a little before its /readyz poll
        # succeeds, so "down" ends when the restart begins, not when it is ready.
        restart_at = time.monotonic()
        with model_server_on(base, grpc_port, rest_port):
            ready_at = time.monotonic()
            wait_for(load, ok_count(since=ready_at), "answers after the restart")
            outcomes = load.stop()
            # The same gateway process, never restarted, is ready again.
            assert httpx.get(f"{gateway.url}/readyz", timeout=5).status_code == 200
        assert gateway.process.poll() is None

    def end(outcome: Outcome) -> float:
        return outcome.started + outcome.seconds

    before = [o for o in outcomes if end(o) < killed_at]
    assert {o.status for o in before} == {"200"}, tally(before)
    # Requests in flight at the kill fail like the rest of the downtime: never a 500.
    assert {o.status for o in outcomes} == {"200", "503"}, tally(outcomes)
    # Once the gateway has answered one 503, everything sent until the restart is a 503.
    noticed_at = min(end(o) for o in outcomes if o.status == "503")
    down = [o for o in outcomes if o.started > noticed_at and end(o) < restart_at]
    assert down, "no request was sent while the model server was down"
    assert {o.status for o in down} == {"503"}, tally(down)
    assert {o.retry_after for o in down} == {"1"}
    # Nothing hangs past the gRPC deadline (plus the retry on UNAVAILABLE and slack).
    slowest = max(o.seconds for o in outcomes)
    assert slowest < 2 * DEADLINE + 2.0, slowest
    after = [o for o in outcomes if o.started >= ready_at]
    first_ok = min(end(o) for o in after if o.status == "200")
    recovery = first_ok - ready_at
    assert recovery < RECOVERY_LIMIT, recovery
    late = [o for o in outcomes if o.started > first_ok]
    assert late, "no request was sent after recovery"
    assert {o.status for o in late} == {"200"}, tally(late)
    down_p99 = sorted(o.seconds for o in down)[int(0.99 * (len(down) - 1))]
    print(
        f"kill/restart: {len(outcomes)} sent; before {tally(before)}, down {tally(down)} "
        f"(p99 {down_p99 * 1000:.0f} ms), after {tally(after)}; slowest {slowest:.2f} s; "
        f"first 200 {recovery:.2f} s after the restarted server was ready"
    )


def _publish(base: Path, version: int, *, corrupt: bool = False) -> None:
    """Write a version next to the repository, then rename it in: never half-written."""
    staging = base.parent / f".staging-{version}"
    if corrupt:
        staging.mkdir()
        (staging / "model.onnx").write_bytes(b"\x08\x07not an onnx graph" * 50)
    else:
        build_test_model(staging, seed=version)
    os.rename(staging, base / str(version))


@pytest.mark.slow
def test_new_and_corrupt_versions_under_load_fail_nothing(tmp_path: Path) -> None:
    base = tmp_path / MODEL
    build_test_model(base / "1", seed=1)
    flags = ["--file_system_poll_wait_seconds=0.2"]
    with (
        run_model_server(base, extra_args=flags) as server,
        run_gateway(server.grpc_address, "--ready-cache-seconds=0", NO_RATE_LIMIT) as gateway,
    ):
        load = Load(gateway.url, clients=6).start()
        wait_for(load, ok_count(), "answers from version 1")
        _publish(base, 2)
        wait_for(load, lambda seen: any(o.version == 2 for o in seen), "an answer from version 2")

        def statuses() -> dict[str, Any]:
            answer = httpx.get(f"{server.rest_url}/v1/models/{MODEL}", timeout=5).json()
            return {s["version"]: s for s in answer["model_version_status"]}

        _publish(base, 3, corrupt=True)
        wait_until(lambda: statuses().get("3", {}).get("state") == "END", 60)
        failed_at = time.monotonic()
        wait_for(load, ok_count(since=failed_at), "answers after the corrupt version")
        outcomes = load.stop()
        states = statuses()
        ready = httpx.get(f"{server.rest_url}/readyz", timeout=5).status_code
    assert {o.status for o in outcomes} == {"200"}, tally(outcomes)
    versions = {o.version for o in outcomes}
    assert versions == {1, 2}, versions
    assert states["3"]["state"] == "END"
    assert "failed to load version 3" in states["3"]["status"]["error_message"]
    assert states["2"]["state"] == "AVAILABLE"
    assert ready == 200
    print(f"versions under load: {len(outcomes)} sent, {tally(outcomes)}, versions {versions}")


@pytest.mark.slow
def test_sigterm_to_the_model_server_under_load(tmp_path: Path) -> None:
    base = tmp_path / MODEL
    build_test_model(base / "1", slow_ops=48)
    grace = 10.0
    with (
        run_model_server(base, extra_args=[f"--shutdown_grace_seconds={grace}"]) as server,
        run_gateway(
            server.grpc_address, "--grpc-deadline=8", "--ready-cache-seconds=0", NO_RATE_LIMIT
        ) as gw,
    ):
        load = Load(gw.url, clients=4).start()
        wait_for(load, ok_count(), "answers before SIGTERM")
        wait_for(load, answered_long_ago(1.5), "an answer to a request sent 1.5 s ago")
        wait_until(lambda: _inflight(server.rest_url) >= 1, 30)  # one is inside the server
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(grace + 5)
        exited = time.monotonic() - signalled
        wait_for(load, sent_after(signalled + exited), "requests after the server exited")
        outcomes = load.stop()
    assert code == 0
    assert exited < grace
    assert {o.status for o in outcomes} <= {"200", "503"}, tally(outcomes)
    # Requests that reached the server before SIGTERM all completed. The gateway
    # needs a moment to decode and forward (more on a busy machine), hence a margin.
    in_flight = [o for o in outcomes if o.started < signalled - 1.0]
    assert {o.status for o in in_flight} == {"200"}, tally(in_flight)
    # With four clients sending back to back, some request is always open at the
    # signal; those the server had accepted complete with 200 after it.
    completed_after = [
        o for o in outcomes if o.started < signalled < o.started + o.seconds and o.status == "200"
    ]
    assert completed_after, "no request in flight at SIGTERM completed"
    # New requests are refused cleanly: 503 from the gateway, never a hang or a 500.
    late = [o for o in outcomes if o.started > signalled + exited]
    assert late
    assert {o.status for o in late} == {"503"}, tally(late)
    print(
        f"SIGTERM model server: exit {code} after {exited:.2f} s; "
        f"{len(completed_after)} in-flight requests completed after the signal; "
        f"later {tally(late)}"
    )


@pytest.mark.slow
def test_sigterm_to_the_gateway_under_load(tmp_path: Path) -> None:
    base = tmp_path / MODEL
    build_test_model(base / "1", slow_ops=48)
    with (
        run_model_server(base) as server,
        run_gateway(server.grpc_address, "--grpc-deadline=8", NO_RATE_LIMIT) as gateway,
    ):
        load = Load(gateway.url, clients=4).start()
        wait_for(load, ok_count(), "answers before SIGTERM")
        wait_for(load, answered_long_ago(1.5), "an answer to a request sent 1.5 s ago")
        wait_until(lambda: _inflight(server.rest_url) >= 1, 30)  # one is being predicted
        signalled = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        code = gateway.process.wait(15)
        exited = time.monotonic() - signalled
        wait_for(load, sent_after(signalled + exited), "requests after the gateway exited")
        outcomes = load.stop()
        log = gateway.log()
    # Regression: uvicorn re-raised SIGTERM after draining, so the exit code was -15.
    assert code == 0, log
    assert exited < 10.0
    # Accepted before the signal (a margin for the client's connect and send).
    in_flight = [o for o in outcomes if o.started < signalled - 1.0]
    assert {o.status for o in in_flight} == {"200"}, tally(in_flight)
    # With four clients sending back to back, some request is always open at the
    # signal; those the server had accepted complete with 200 after it.
    completed_after = [
        o for o in outcomes if o.started < signalled < o.started + o.seconds and o.status == "200"
    ]
    assert completed_after, "no request in flight at SIGTERM completed"
    late = [o for o in outcomes if o.started > signalled + exited]
    assert late
    # The port is closed: connecting is refused at once, nothing hangs.
    assert {o.status for o in late} == {"ConnectError"}, tally(late)
    assert max(o.seconds for o in late) < REFUSAL_LIMIT
    print(
        f"SIGTERM gateway: exit {code} after {exited:.2f} s; "
        f"{len(completed_after)} in-flight requests completed after the signal; "
        f"later {tally(late)}"
    )


def _inflight(rest_url: str) -> float:
    """The model server's own count of Predict calls in progress."""
    text = httpx.get(f"{rest_url}/metrics", timeout=5).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("model_server_inflight_requests{")
    )
