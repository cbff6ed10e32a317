"""Offered load well above capacity: fast refusals, bounded queue and latency, recovery.

The model server runs as a real process with a slow model and a deliberately
short batching queue (4 rows). Far more clients than that push requests for a
few seconds: the overflow must be refused at once (RESOURCE_EXHAUSTED over
gRPC, 429 + Retry-After over REST) instead of queueing, admitted requests keep
a bounded p99, memory stays flat, and once the load stops the server answers
normally without being restarted.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import httpx
import pytest

from tests.fixtures import ModelServerProcess, build_test_model, run_model_server

from .helpers import MODEL, images, percentile, predict_request, prediction_stub, process_stats

BATCHING = [
    "--enable_batching",
    "--max_batch_size=2",
    "--max_enqueued_batches=2",
    "--num_batch_threads=1",
    "--batch_timeout_micros=1000",
    "--intra_op_threads=1",
]
QUEUE_ROWS = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServerProcess]:
    base = tmp_path_factory.mktemp("overload") / MODEL
    build_test_model(base / "1", slow_ops=3)
    with run_model_server(base, extra_args=BATCHING) as running:
        yield running


@dataclass
class Tally:
    codes: Counter[str] = field(default_factory=Counter)
    admitted_seconds: list[float] = field(default_factory=list)
    refused_seconds: list[float] = field(default_factory=list)
    retry_after: set[str] = field(default_factory=set)


async def _grpc_client(address: str, until: float, tally: Tally) -> None:
    request = predict_request(images(1))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = prediction_stub(channel)
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                await stub.Predict(request, timeout=10)
            except grpc.aio.AioRpcError as error:
                tally.codes[error.code().name] += 1
                tally.refused_seconds.append(time.monotonic() - started)
                # A client that backs off a little, as Retry-After asks.
                await asyncio.sleep(0.05)
            else:
                tally.codes["OK"] += 1
                tally.admitted_seconds.append(time.monotonic() - started)


async def _queue_depth(rest_url: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{rest_url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(f'model_server_queue_depth{{model="{MODEL}"}}'):
            return float(line.split()[-1])
    raise AssertionError("model_server_queue_depth missing")


async def _watch_queue(rest_url: str, until: float, seen: list[float]) -> None:
    while time.monotonic() < until:
        seen.append(await _queue_depth(rest_url))
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_grpc_overload_is_refused_fast_and_recovers(server: ModelServerProcess) -> None:
    # Capacity first: one client alone, nothing refused.
    calm = Tally()
    await _grpc_client(server.grpc_address, time.monotonic() + 1.5, calm)
    assert set(calm.codes) == {"OK"}, calm.codes
    alone_p50 = percentile(calm.admitted_seconds, 0.5)

    before = process_stats(server.process.pid)
    tally = Tally()
    depths: list[float] = []
    until = time.monotonic() + 5.0
    await asyncio.gather(
        *(_grpc_client(server.grpc_address, until, tally) for _ in range(32)),
        _watch_queue(server.rest_url, until, depths),
    )
    after = process_stats(server.process.pid)

    assert set(tally.codes) <= {"OK", "RESOURCE_EXHAUSTED"}, tally.codes
    assert tally.codes["RESOURCE_EXHAUSTED"] > tally.codes["OK"], tally.codes
    assert tally.codes["OK"] > 0
    # Refusals come at once, not after a wait in a queue (bounds are loose: the
    # test machine may be shared, but a queued refusal would take seconds).
    refused_p99 = percentile(tally.refused_seconds, 0.99)
    admitted_p99 = percentile(tally.admitted_seconds, 0.99)
    assert refused_p99 < 2.0, tally.refused_seconds[-20:]
    assert percentile(tally.refused_seconds, 0.5) < percentile(tally.admitted_seconds, 0.5)
    # Admitted requests wait for at most a full queue ahead of them, not for 32 clients.
    assert admitted_p99 < 5.0, (admitted_p99, alone_p50)
    assert max(depths) <= QUEUE_ROWS, depths
    assert after.rss_kib - before.rss_kib < 0.1 * before.rss_kib, (before, after)

    # Load gone: the same process serves every request again, and the queue is empty.
    await asyncio.sleep(0.5)
    recovered = Tally()
    await _grpc_client(server.grpc_address, time.monotonic() + 1.0, recovered)
    assert set(recovered.codes) == {"OK"}, recovered.codes
    assert await _queue_depth(server.rest_url) == 0
    print(
        f"overload grpc: {sum(tally.codes.values())} sent, {dict(tally.codes)}, "
        f"refused p99 {refused_p99 * 1000:.1f} ms, "
        f"admitted p99 {admitted_p99 * 1000:.1f} ms (alone p50 {alone_p50 * 1000:.1f} ms), "
        f"max queue {max(depths):.0f} rows, RSS {before.rss_kib} -> {after.rss_kib} KiB"
    )


async def _rest_client(client: httpx.AsyncClient, url: str, until: float, tally: Tally) -> None:
    body = {"instances": [{"b64": base64.b64encode(images(1)[0].tobytes()).decode()}]}
    while time.monotonic() < until:
        started = time.monotonic()
        answer = await client.post(url, json=body, timeout=10)
        elapsed = time.monotonic() - started
        tally.codes[str(answer.status_code)] += 1
        if answer.status_code == 200:
            tally.admitted_seconds.append(elapsed)
        else:
            tally.refused_seconds.append(elapsed)
            tally.retry_after.add(answer.headers.get("Retry-After", "missing"))
            assert "error" in answer.json()
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_rest_overload_is_429_with_retry_after(server: ModelServerProcess) -> None:
    url = f"{server.rest_url}/v1/models/{MODEL}:predict"
    tally = Tally()
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(limits=limits) as client:
        until = time.monotonic() + 4.0
        await asyncio.gather(*(_rest_client(client, url, until, tally) for _ in range(32)))
        assert set(tally.codes) <= {"200", "429"}, tally.codes
        assert tally.codes["429"] > 0, tally.codes
        assert tally.codes["200"] > 0, tally.codes
        assert tally.retry_after == {"1"}
        # Every answer well inside the 10 s client deadline: nothing piles up.
        assert percentile(tally.refused_seconds, 0.99) < 5.0
        assert percentile(tally.admitted_seconds, 0.99) < 8.0
        await asyncio.sleep(0.5)
        calm = Tally()
        await _rest_client(client, url, time.monotonic() + 1.0, calm)
        assert set(calm.codes) == {"200"}, calm.codes
    print(
        f"overload rest: {sum(tally.codes.values())} sent, {dict(tally.codes)}, "
        f"refused p99 {percentile(tally.refused_seconds, 0.99) * 1000:.1f} ms, "
        f"admitted p99 {percentile(tally.admitted_seconds, 0.99) * 1000:.1f} ms"
    )
