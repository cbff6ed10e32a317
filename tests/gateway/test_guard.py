"""The guard's pieces one by one; tests/gateway/test_limits_over_http.py and
tests/hardening drive them together over HTTP."""

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest

from clothing.gateway.errors import BodyTimeout, Overloaded, TooLarge
from clothing.gateway.guard import (
    SMALL_BODY_BYTES,
    BodyBudget,
    InflightLimit,
    answer_unexpected_errors,
)


def scope(path: str, length: int | None = None) -> dict[str, Any]:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return {"type": "http", "path": path, "headers": headers}


def chunks(*parts: bytes, stall: bool = False):
    messages = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1 or stall}
        for i, part in enumerate(parts)
    ]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # a client that stopped sending
        raise AssertionError("unreachable")

    return receive


async def test_a_body_is_counted_until_its_request_ends():
    budget = BodyBudget({"/predict": 100}, max_buffered=150, timeout=5.0)
    async with budget.read(scope("/predict"), chunks(b"a" * 60, b"b" * 30)) as body:
        assert body == b"a" * 60 + b"b" * 30
        assert budget.buffered == 90
        with pytest.raises(Overloaded, match="bytes in flight"):
            async with budget.read(scope("/predict"), chunks(b"c" * 40, b"d" * 40)):
                pass
        assert budget.buffered == 90  # the refused one's 40 bytes were given back
    assert budget.buffered == 0


async def test_caps_are_per_route_and_announced_lengths_are_refused_unread():
    budget = BodyBudget({"/predict": 100}, max_buffered=10**9, timeout=5.0)
    with pytest.raises(TooLarge, match="over 100 bytes"):
        async with budget.read(scope("/predict", 101), chunks()):
            pass
    with pytest.raises(TooLarge, match=f"over {SMALL_BODY_BYTES} bytes"):
        async with budget.read(scope("/healthz"), chunks(b"x" * (SMALL_BODY_BYTES + 1))):
            pass
    assert budget.buffered == 0


async def test_a_stalled_body_times_out_and_gives_its_bytes_back():
    budget = BodyBudget({}, max_buffered=10**9, timeout=0.2)
    with pytest.raises(BodyTimeout, match=r"within 0\.2 s"):
        async with budget.read(scope("/x"), chunks(b"abc", stall=True)):
            pass
    assert budget.buffered == 0


async def test_a_disconnected_client_has_no_body():
    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    budget = BodyBudget({}, max_buffered=10, timeout=1.0)
    async with budget.read(scope("/x"), gone) as body:
        assert body is None


def test_only_predictions_take_slots_and_one_too_many_is_refused():
    limit = InflightLimit(1)
    with limit.slot(scope("/predict")):
        with limit.slot(scope("/healthz")):
            assert limit.current == 1
        with (
            pytest.raises(Overloaded, match="more than 1 predictions"),
            limit.slot(scope("/predict/batch")),
        ):
            pass
    assert limit.current == 0


async def test_an_exception_is_answered_500_unless_an_answer_had_begun():
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def fails_at_once(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("bug")

    async def fails_mid_answer(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("bug")

    assert await answer_unexpected_errors(fails_at_once, scope("/x"), receive, send) == 500
    assert sent[0]["status"] == 500
    assert b"internal error" in sent[1]["body"]
    assert b"bug" not in sent[1]["body"]
    sent.clear()
    assert await answer_unexpected_errors(fails_mid_answer, scope("/x"), receive, send) == 500
    assert [m["type"] for m in sent] == ["http.response.start"]
