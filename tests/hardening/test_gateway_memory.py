"""Peak memory of a real gateway process decoding small files that expand to 100-300 MB:
each is decoded within the budget (or refused before decoding), never as several
full-size copies, and the gateway then serves the next request.

The gateway runs with the decode budget its pod gets: a quarter of the 512 MiB limit,
one decode worker (the pod's one CPU): 128 MiB. Memory is measured over the gateway
and its decode worker processes together.

Measured before the third round's fix (the worker was a thread then): a progressive
CMYK JPEG of 6000x6000 answered 200 at +276 MB, a 4000x4000 WebP 200 at +243 MB and
a PNG with 60 MB of zTXt 200 at +60 MB, all against the 128 MiB budget."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.fixtures import GatewayProcess, ModelServerProcess, run_gateway
from tests.images import noise_png

from . import bombs
from .helpers import reset_tree_peak_rss, tree_peak_rss_kib, tree_rss_kib

POD_DECODE_BUDGET = 512 * 1024 * 1024 // 4


@pytest.fixture(scope="module")
def gateway(module_model_server: ModelServerProcess) -> Iterator[GatewayProcess]:
    args = ["--workers=1", f"--max-decode-bytes={POD_DECODE_BUDGET}"]
    with run_gateway(module_model_server.grpc_address, *args) as running:
        yield running


def _predict(gateway: GatewayProcess, data: bytes) -> httpx.Response:
    body = {"image_b64": base64.b64encode(data).decode()}
    return httpx.post(f"{gateway.url}/predict", json=body, timeout=120)


CASES: list[tuple[str, Callable[[int], bytes], int, int]] = [
    # name, builder, side, expected status
    ("rgba_png", bombs.rgba_png, 6324, 413),  # 160 MB, 320 MB premultiplied: over
    ("rgba_png", bombs.rgba_png, 4000, 200),  # 64 MB, 128 MB premultiplied
    ("gray16_png", bombs.gray16_png, 4500, 200),  # 40 MB, 121 MB converted to 32-bit
    ("palette_png", bombs.palette_png, 4800, 413),  # 23 MB, 207 MB as premultiplied RGBA
    ("palette_png", bombs.palette_png, 3800, 200),  # 14 MB, 130 MB as premultiplied RGBA
    ("gif_frames", bombs.gif_frames, 4800, 200),  # 23 MB, 115 MB as RGB
    ("mpo", bombs.mpo, 6324, 200),  # 160 MB at full size; decoded at 1/8 scale
    # Coefficients at full size whatever the scale: 3 bytes a pixel (4:2:0), 8 for CMYK.
    ("progressive_jpeg", bombs.progressive_jpeg, 6000, 200),  # 108 MB of coefficients
    ("progressive_cmyk", bombs.progressive_cmyk, 6000, 413),  # 288 MB of coefficients
    ("progressive_cmyk", bombs.progressive_cmyk, 3800, 200),  # 116
    ("webp_photo", bombs.webp_photo, 4000, 413),  # 16 bytes a pixel: 256 MB
    ("webp_photo", bombs.webp_photo, 2800, 200),  # 125 MB
    ("png_text", bombs.png_text, 60, 413),  # 60 MB of zTXt in a 62 KB file
]


@pytest.mark.parametrize(
    ("name", "build", "side", "status"),
    CASES,
    ids=[f"{name}-{side}" for name, _, side, _ in CASES],
)
def test_decode_peak_memory_stays_within_the_budget(
    gateway: GatewayProcess, name: str, build: Callable[[int], bytes], side: int, status: int
) -> None:
    data = build(side)
    pid = gateway.process.pid
    assert _predict(gateway, noise_png()).status_code == 200  # warm
    before = tree_rss_kib(pid)
    reset_tree_peak_rss(pid)
    started = time.monotonic()
    answer = _predict(gateway, data)
    elapsed = time.monotonic() - started
    growth_mb = (tree_peak_rss_kib(pid) - before) / 1024
    decoded_mb = bombs.DECODED_BYTES[name](side) / 2**20 if name in bombs.DECODED_BYTES else 0
    print(
        f"{name} {side}x{side} ({len(data) // 1024} KB, {decoded_mb:.0f} MB decoded): "
        f"{answer.status_code} in {elapsed:.2f} s, peak RSS +{growth_mb:.0f} MB"
    )
    assert answer.status_code == status, answer.text
    # The request body (base64 + its decode) plus at most the budget, never copies of it.
    assert growth_mb < POD_DECODE_BUDGET / 2**20 + 4 * len(data) / 2**20 + 30, growth_mb
    assert _predict(gateway, noise_png()).status_code == 200


def test_the_decode_budget_follows_the_memory_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from clothing import cgroup
    from clothing.gateway.settings import GatewaySettings

    monkeypatch.setattr(cgroup, "memory_limit", lambda: 512 * 2**20)
    assert GatewaySettings(workers=1).decode_budget == POD_DECODE_BUDGET
    assert GatewaySettings(workers=4).decode_budget == POD_DECODE_BUDGET // 4
    monkeypatch.setattr(cgroup, "memory_limit", lambda: None)
    assert GatewaySettings(workers=1).decode_budget == 256 * 2**20  # 1 GiB assumed
    assert GatewaySettings(max_decode_bytes=10**6).decode_budget == 10**6


def test_a_batch_of_large_images_decodes_one_at_a_time(gateway: GatewayProcess) -> None:
    """Four 64 MB RGBA PNGs in one batch: the decode pool (one worker in the pod) holds one
    at a time, so the peak is one image's budget, not four."""
    data = bombs.rgba_png(4000)
    pid = gateway.process.pid
    assert _predict(gateway, noise_png()).status_code == 200
    before = tree_rss_kib(pid)
    reset_tree_peak_rss(pid)
    started = time.monotonic()
    body = {"images_b64": [base64.b64encode(data).decode()] * 4}
    answer = httpx.post(f"{gateway.url}/predict/batch", json=body, timeout=120)
    elapsed = time.monotonic() - started
    growth_mb = (tree_peak_rss_kib(pid) - before) / 1024
    print(
        f"batch of 4 RGBA 4000x4000: {answer.status_code} in {elapsed:.2f} s, +{growth_mb:.0f} MB"
    )
    assert answer.status_code == 200, answer.text
    assert all("label" in item for item in answer.json()["results"])
    assert growth_mb < POD_DECODE_BUDGET / 2**20 + 30, growth_mb
