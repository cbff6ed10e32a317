"""Shared test helpers: a small real ONNX model and a real model-server process.

``build_test_model`` writes an ONNX model with the clothing signature (uint8 NHWC
``image`` in, ``probabilities`` [N, 10] out, dynamic batch) built with
``onnx.helper``: it normalises inside, mean-pools the pixels and applies a
seeded linear layer and a softmax, so different images give different answers.

``run_model_server`` and ``run_gateway`` start ``clothing model-server`` and
``clothing gateway`` as subprocesses on free loopback ports, wait for ``/readyz``
and, on exit, send SIGTERM and check that the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from clothing.processes import free_port, start_logged, stop_process, wait_ready

# fetch_ports for gateways whose image servers listen on random ports.
EVERY_PORT = tuple(range(1, 65536))

CLASSES = (
    "dress",
    "hat",
    "longsleeve",
    "outwear",
    "pants",
    "shirt",
    "shoes",
    "shorts",
    "skirt",
    "t-shirt",
)


def build_test_model(
    directory: str | os.PathLike[str],
    *,
    height: int = 32,
    width: int = 32,
    classes: Sequence[str] = CLASSES,
    seed: int = 0,
    slow_ops: int = 0,
    metadata: bool = True,
    opset: int = 17,
) -> Path:
    """Write ``directory/model.onnx`` (and ``metadata.json``); return the model path.

    ``slow_ops`` adds that many 512x512 matrix products per row whose result is
    multiplied by zero: the answer does not change but each call takes longer,
    which tests of draining and batching need.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_classes = len(classes)
    weights = rng.normal(0.0, 2.0, size=(3, n_classes)).astype(np.float32)
    bias = rng.normal(0.0, 0.1, size=(n_classes,)).astype(np.float32)
    initializers = [
        numpy_helper.from_array(np.array(255.0, dtype=np.float32), "scale"),
        numpy_helper.from_array(weights, "weights"),
        numpy_helper.from_array(bias, "bias"),
    ]
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["pixels", "scale"], ["unit"]),
        helper.make_node("ReduceMean", ["unit"], ["pooled4"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["pooled4", "weights"], ["product"]),
        helper.make_node("Add", ["product", "bias"], ["logits_base"]),
    ]
    logits = "logits_base"
    if slow_ops:
        size = 512
        initializers += [
            numpy_helper.from_array(rng.normal(size=(3, size)).astype(np.float32), "widen"),
            numpy_helper.from_array(
                (rng.normal(size=(size, size)) / size).astype(np.float32), "square"
            ),
            numpy_helper.from_array(np.zeros((size, n_classes), np.float32), "zero_head"),
            numpy_helper.from_array(np.array([-1, size, 1], np.int64), "column"),
            numpy_helper.from_array(np.array([-1, 1, size], np.int64), "row"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        ]
        nodes += [
            helper.make_node("MatMul", ["pooled4", "widen"], ["wide"]),
            helper.make_node("Reshape", ["wide", "column"], ["wide_col"]),
            helper.make_node("Reshape", ["wide", "row"], ["wide_row"]),
            # [N, 512, 512]: an outer product per row, then repeated squaring.
            helper.make_node("MatMul", ["wide_col", "wide_row"], ["work0"]),
        ]
        for index in range(slow_ops):
            nodes.append(
                helper.make_node("MatMul", [f"work{index}", "square"], [f"work{index + 1}"])
            )
        nodes += [
            helper.make_node(
                "ReduceMean", [f"work{slow_ops}"], ["work_mean"], axes=[1], keepdims=0
            ),
            helper.make_node("MatMul", ["work_mean", "zero_head"], ["nothing"]),
            helper.make_node("Add", ["logits_base", "nothing"], ["logits_slow"]),
        ]
        logits = "logits_slow"
    nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "clothing_test_model",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", height, width, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = target / "model.onnx"
    onnx.save(model, str(path))
    if metadata:
        info = {
            "name": "clothing-model",
            "classes": list(classes),
            "input": {
                "name": "image",
                "dtype": "uint8",
                "layout": "NHWC",
                "height": height,
                "width": width,
                "preprocessing": "none",
            },
            "output": {"name": "probabilities"},
            "training": {"test_model": True, "seed": seed},
            "metrics": {},
        }
        (target / "metadata.json").write_text(json.dumps(info, indent=2))
    return path


def reference_probabilities(
    images: np.ndarray, *, seed: int = 0, n_classes: int = 10
) -> np.ndarray:
    """What ``build_test_model(seed=seed)`` answers for ``images``, computed in numpy."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 2.0, size=(3, n_classes)).astype(np.float32)
    bias = rng.normal(0.0, 0.1, size=(n_classes,)).astype(np.float32)
    pooled = (images.astype(np.float32) / 255.0).mean(axis=(1, 2))
    logits = pooled @ weights + bias
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def cli_command(subcommand: str, *args: str) -> list[str]:
    """``clothing SUBCOMMAND ARGS`` run by this interpreter, as the tests start every tier."""
    return [sys.executable, "-m", "clothing.cli", subcommand, *args]


def model_server_command(grpc_port: int, rest_port: int, *args: str) -> list[str]:
    """``clothing model-server`` on loopback at the given ports."""
    return cli_command(
        "model-server",
        "--host=127.0.0.1",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        *args,
    )


@dataclass
class ModelServerProcess:
    """A running ``clothing model-server`` subprocess."""

    process: subprocess.Popen[bytes]
    grpc_port: int
    rest_port: int
    log_path: Path

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait, and return the exit code (kills after ``timeout``)."""
        return stop_process(self.process, timeout)


class ExitCodeError(AssertionError):
    """A stopped server exited with another code than the test expected."""


@contextlib.contextmanager
def _logged_child(
    name: str,
    command: Sequence[str],
    *,
    env: dict[str, str] | None,
    expect_exit_code: int | None,
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Start ``command`` with its output in a log file; SIGTERM it at exit.

    A failure inside prints the child's log. At a clean exit the child's exit code
    must equal ``expect_exit_code`` (``None`` skips the check).
    """
    with tempfile.TemporaryDirectory(prefix=f"{name}-log-") as log_dir:
        log_path = Path(log_dir) / f"{name}.log"
        process = start_logged(command, log_path, env=env)
        try:
            yield process, log_path
        except BaseException:
            stop_process(process)
            sys.stderr.write(log_path.read_text(errors="replace"))
            raise
        code = stop_process(process)
        if expect_exit_code is not None and code != expect_exit_code:
            log = log_path.read_text(errors="replace")
            raise ExitCodeError(f"{name} exited {code}, not {expect_exit_code}, log:\n{log}")


@contextlib.contextmanager
def run_model_server(
    model_base_path: str | os.PathLike[str] | None = None,
    *,
    model_name: str = "clothing-model",
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    ready_timeout: float = 60.0,
    wait_for_ready: bool = True,
    expect_exit_code: int | None = 0,
) -> Iterator[ModelServerProcess]:
    """Start ``clothing model-server`` on free loopback ports; SIGTERM it at exit.

    Without ``model_base_path`` only ``extra_args`` (e.g. ``--model_config_file``)
    name the models. At exit the exit code must equal ``expect_exit_code``
    (``None`` skips the check).
    """
    grpc_port, rest_port = free_port(), free_port()
    command = model_server_command(grpc_port, rest_port)
    if model_base_path is not None:
        command += [f"--model_name={model_name}", f"--model_base_path={model_base_path}"]
    command += extra_args
    child = _logged_child("model-server", command, env=env, expect_exit_code=expect_exit_code)
    with child as (process, log_path):
        server = ModelServerProcess(process, grpc_port, rest_port, log_path)
        if wait_for_ready:
            wait_ready(f"{server.rest_url}/readyz", process, ready_timeout)
        yield server


def json_body(response: httpx.Response) -> Any:
    """The JSON body of a response, with its text in the failure message."""
    try:
        return response.json()
    except ValueError as error:
        raise AssertionError(f"not JSON: {response.status_code} {response.text!r}") from error


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_tcp_server(handler: RawHandler) -> AsyncIterator[int]:
    """A raw asyncio server on 127.0.0.1; yields its port.

    Each connection is aborted when its handler ends, and handlers still running
    at the end (hosts that never answer) are cancelled, so no stream outlives
    the test's event loop.
    """
    handlers: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


@dataclass
class GatewayProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def run_gateway(
    tf_serving_host: str,
    *extra: str,
    wait_for_ready: bool = True,
    expect_exit_code: int | None = 0,
) -> Iterator[GatewayProcess]:
    """``clothing gateway`` as a subprocess on a free loopback port; SIGTERM at exit.

    Without ``wait_for_ready`` only ``/healthz`` must answer (no model server
    behind it). At exit the exit code must equal ``expect_exit_code`` (``None``
    skips the check).
    """
    port = free_port()
    command = cli_command(
        "gateway",
        "--host=127.0.0.1",
        f"--port={port}",
        "--metrics-port=0",
        f"--tf-serving-host={tf_serving_host}",
        "--log-level=warning",
        *extra,
    )
    child = _logged_child("gateway", command, env=None, expect_exit_code=expect_exit_code)
    with child as (process, log_path):
        gateway = GatewayProcess(process, port, log_path)
        wait_ready(f"{gateway.url}/{'readyz' if wait_for_ready else 'healthz'}", process, 60.0)
        yield gateway
