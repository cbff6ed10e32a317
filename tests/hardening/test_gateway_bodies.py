"""Request bodies against a real gateway process: each route's cap is enforced while the
body streams in, with 413 before the memory is spent, and batch items are counted before
they are parsed."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures import GatewayProcess, build_test_model, run_gateway, run_model_server
from tests.images import noise_png

from . import bodies
from .helpers import peak_rss_kib, process_stats, reset_peak_rss


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    base = tmp_path_factory.mktemp("bodies") / "clothing-model"
    build_test_model(base / "1")
    with run_model_server(base) as model_server, run_gateway(model_server.grpc_address) as running:
        yield running


def _measured(
    gateway: GatewayProcess, path: str, content: bytes | Iterable[bytes], content_type: str
) -> tuple[httpx.Response | None, float, float]:
    """Status (None: the gateway closed the upload early), seconds, peak RSS growth in MB."""
    pid = gateway.process.pid
    before = process_stats(pid).rss_kib
    reset_peak_rss(pid)
    started = time.monotonic()
    try:
        answer: httpx.Response | None = httpx.post(
            f"{gateway.url}{path}",
            content=content,
            headers={"Content-Type": content_type},
            timeout=120,
        )
    except httpx.HTTPError:
        answer = None
    return answer, time.monotonic() - started, (peak_rss_kib(pid) - before) / 1024


def _still_serves(gateway: GatewayProcess) -> None:
    answer = httpx.post(f"{gateway.url}/predict", files={"file": noise_png()}, timeout=30)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("name", "path", "make", "content_type"),
    [
        (
            "200 MB image_b64, streamed",
            "/predict",
            lambda: bodies.huge_image_b64_json(200 << 20),
            "application/json",
        ),
        (
            "200 MB multipart file, streamed",
            "/predict",
            lambda: bodies.huge_multipart(200 << 20),
            "multipart/form-data; boundary=hostileboundary",
        ),
        (
            "200 MB batch of base64, streamed",
            "/predict/batch",
            lambda: bodies.huge_image_b64_json(200 << 20),
            "application/json",
        ),
    ],
    ids=["b64", "multipart", "batch"],
)
def test_oversized_bodies_are_refused_while_streaming(
    gateway: GatewayProcess, name: str, path: str, make: object, content_type: str
) -> None:
    assert callable(make)
    answer, elapsed, growth = _measured(gateway, path, make(), content_type)
    status = None if answer is None else answer.status_code
    print(f"{name}: {status} in {elapsed:.2f} s, peak RSS +{growth:.0f} MB")
    # A server may answer 413 and close before the client finished sending.
    assert status in (413, None), answer.text if answer is not None else ""
    # /predict holds at most one image's base64 (14 MB); the batch at most an eighth
    # of the (assumed) memory, 128 MiB, never the whole 200 MB several times over.
    assert growth < (300 if path.endswith("batch") else 60), growth
    _still_serves(gateway)


def test_a_batch_of_tiny_urls_is_counted_before_parsing(gateway: GatewayProcess) -> None:
    body = bodies.many_urls_body(40 << 20)
    answer, elapsed, growth = _measured(gateway, "/predict/batch", body, "application/json")
    assert answer is not None
    print(f"10 million urls: {answer.status_code} in {elapsed:.2f} s, peak RSS +{growth:.0f} MB")
    assert answer.status_code == 422, answer.text
    assert growth < 150, growth  # the 40 MB body itself, not 10 million strings
    _still_serves(gateway)


def test_an_overlong_url_item_is_refused(gateway: GatewayProcess) -> None:
    answer, _, _ = _measured(
        gateway, "/predict/batch", bodies.long_url_body(10_000), "application/json"
    )
    assert answer is not None
    assert answer.status_code == 422, answer.text


def _files_under(pid: int, directory: str) -> list[str]:
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            targets.append(os.readlink(fd))
    return [target for target in targets if target.startswith(directory)]


def test_a_stalled_upload_holds_no_temporary_file(gateway: GatewayProcess) -> None:
    """Starlette spills an upload past 1 MB to /tmp (a 64 MiB emptyDir in the pod), where a
    client that stops sending would keep it."""
    chunks = bodies.huge_multipart(8 << 20)
    head = b"".join(itertools.islice(chunks, 9))  # the part header and 8 MiB of the file
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: gateway\r\n"
            b"Content-Type: multipart/form-data; boundary=hostileboundary\r\n"
            + f"Content-Length: {len(head) + 1000}\r\n\r\n".encode()
            + head
        )
        time.sleep(1.0)  # the gateway has parsed what arrived; the client stalls
        opened = _files_under(gateway.process.pid, tempfile.gettempdir())
        spilled = [path for path in opened if path != str(gateway.log_path)]
    print(f"stalled 8 MiB upload: files open under the temporary directory: {spilled}")
    assert spilled == []
    _still_serves(gateway)
