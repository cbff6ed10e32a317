"""Small requests that ask the model server for much: builders shared by the tests here and
by the container runs (which send the same bytes to a server under the pod's limits).

Each builder returns the message or body only; what the server must answer is the
tests' business.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clothing.proto.tensorflow.core.framework import types_pb2
from clothing.proto.tensorflow_serving.apis import model_management_pb2, predict_pb2

MODEL = "clothing-model"


def reload_request(*entries: tuple[str, str | Path]) -> model_management_pb2.ReloadConfigRequest:
    """HandleReloadConfigRequest serving exactly these (name, base path) models."""
    request = model_management_pb2.ReloadConfigRequest()
    for name, base in entries:
        request.config.model_config_list.config.add(
            name=name, base_path=str(base), model_platform="onnx"
        )
    return request


def many_models_request(count: int, base: str | Path) -> model_management_pb2.ReloadConfigRequest:
    """``count`` names on one base path: each would cost a session, a metric series and a
    /readyz entry."""
    return reload_request(*((f"m{index}", base) for index in range(count)))


def shorthand_predict(
    dims: Sequence[int], *, model: str = MODEL, value: int = 7
) -> predict_pb2.PredictRequest:
    """A uint8 Predict of a few dozen bytes: one ``int_val`` that TF Serving's shorthand
    repeats over the whole declared shape."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    image = request.inputs["image"]
    image.dtype = types_pb2.DT_UINT8
    image.int_val.append(value)
    for size in dims:
        image.tensor_shape.dim.add(size=size)
    return request


def empty_lists_body(total_bytes: int) -> bytes:
    """A REST Predict body of ``[],`` repeated: each 3 bytes becomes a Python list."""
    count = max(1, (total_bytes - 20) // 3)
    return b'{"instances": [' + b"[]," * (count - 1) + b"[]]}"


def deep_nesting_body(depth: int) -> bytes:
    """A REST Predict body nested ``depth`` lists deep."""
    return b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"


def stalled_request_head(path: str, announced: int, *, host: str = "gateway") -> bytes:
    """A POST's headers announcing ``announced`` body bytes, none of which will follow."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {announced}\r\n\r\n"
    ).encode()


def slow_lookup(
    release: threading.Event, address: str = "93.184.216.34"
) -> Callable[[str, int], list[Any]]:
    """A getaddrinfo stand-in on which names starting with "slow" block until ``release``
    (a name whose DNS server never answers); others resolve to ``address`` at once."""

    def lookup(host: str, port: int) -> list[Any]:
        if host.startswith("slow"):
            release.wait()
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    return lookup


def redirect_to(location: str) -> bytes:
    """An image host's raw answer: a 302 to ``location``, however malformed."""
    return f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()


def image_response() -> bytes:
    """An image host's raw answer: 200 with a small PNG."""
    from tests.images import encode, solid

    body = encode(solid((200, 30, 30), (40, 30)), "PNG")
    head = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body
