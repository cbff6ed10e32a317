"""CPU a single image may cost the gateway, with a real gateway process.

- A progressive JPEG that repeats its last, tiny scan: every copy is one more pass
  over all the coefficients. Measured before the fix: a 55 KB file (2000 copies)
  answered 200 after about 11 s, its one decode worker busy all along. Now it is
  refused from its header, in milliseconds.
- Any decode that outlives ``--decode-timeout`` is stopped (its worker process
  killed and replaced) and answered 413, while the other workers keep serving.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.fixtures import GatewayProcess, ModelServerProcess, run_gateway
from tests.images import noise_png

from . import bombs

DECODE_TIMEOUT = 0.3


@pytest.fixture(scope="module")
def gateway(module_model_server: ModelServerProcess) -> Iterator[GatewayProcess]:
    args = ["--workers=2", f"--decode-timeout={DECODE_TIMEOUT}", "--max-decode-bytes=400000000"]
    with run_gateway(module_model_server.grpc_address, *args) as running:
        yield running


def _predict(gateway: GatewayProcess, data: bytes) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    body = {"image_b64": base64.b64encode(data).decode()}
    answer = httpx.post(f"{gateway.url}/predict", json=body, timeout=120)
    return answer, time.monotonic() - started


def test_a_jpeg_repeating_its_scans_is_refused_at_once(gateway: GatewayProcess) -> None:
    data = bombs.repeated_scans(2000)
    answer, elapsed = _predict(gateway, data)
    print(
        f"{len(data) // 1024} KB JPEG, 2000 repeated scans: {answer.status_code} in {elapsed:.2f} s"
    )
    assert answer.status_code == 413, answer.text
    assert "scans" in answer.json()["error"]["message"]
    assert elapsed < 1.0
    # Real encoders' scan counts pass: libjpeg's progressive scripts for colour and CMYK.
    for mode in ("RGB", "CMYK"):
        assert _predict(gateway, bombs.progressive_jpeg(600, mode))[0].status_code == 200


def test_a_decode_past_its_deadline_is_stopped_while_others_are_served(
    gateway: GatewayProcess,
) -> None:
    slow = bombs.rgba_png(5000)  # about a second of decoding: past the deadline
    small = noise_png()
    with ThreadPoolExecutor(8) as pool:
        slow_answer = pool.submit(_predict, gateway, slow)
        time.sleep(0.05)
        others = [pool.submit(_predict, gateway, small) for _ in range(10)]
        answer, elapsed = slow_answer.result()
        served = [future.result() for future in others]
    print(
        f"RGBA PNG 5000x5000 with a {DECODE_TIMEOUT} s deadline: {answer.status_code} in "
        f"{elapsed:.2f} s; meanwhile {sum(a.status_code == 200 for a, _ in served)} of 10 "
        f"small photos answered 200, slowest in {max(t for _, t in served):.2f} s"
    )
    assert answer.status_code == 413, answer.text
    assert "to decode" in answer.json()["error"]["message"]
    assert elapsed < DECODE_TIMEOUT + 3.0
    assert all(a.status_code == 200 for a, _ in served)
    # The stopped worker was replaced: photos are still served, two at a time.
    with ThreadPoolExecutor(2) as pool:
        again = list(pool.map(lambda _: _predict(gateway, small)[0].status_code, range(4)))
    assert again == [200] * 4
