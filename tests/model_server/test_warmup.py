"""Warm-up: each session runs once on zeros before its version turns AVAILABLE."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from clothing.model_server import cli
from clothing.model_server.backend import OnnxBackend
from clothing.model_server.config import BatchingConfig, RuntimeConfig
from tests.fixtures import build_test_model


class CountingBackend(OnnxBackend):
    """The real backend, noting each run's session and batch size."""

    def __init__(self, runtime: RuntimeConfig) -> None:
        super().__init__(runtime)
        self.runs: list[tuple[str, int]] = []

    def _run(
        self, session: object | None, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        which = "solo" if session is self._solo_session else "main"
        self.runs.append((which, len(next(iter(inputs.values())))))
        return super()._run(session, inputs)


def test_loading_runs_every_session_at_every_warm_up_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = build_test_model(tmp_path / "1")
    runtime = RuntimeConfig(intra_op_threads=1, solo_intra_op_threads=2, warmup_batch_sizes=(2, 4))
    backend = CountingBackend(runtime)
    with caplog.at_level(logging.INFO):
        backend.load(model)
    assert backend.runs == [("main", 2), ("solo", 2), ("main", 4), ("solo", 4)]
    assert "warmed up 2 session(s) at batch size(s) 2, 4" in caplog.text
    quiet = CountingBackend(RuntimeConfig(warmup_batch_sizes=()))
    quiet.load(model)
    assert quiet.runs == []


def test_a_model_with_unknown_dimensions_past_the_batch_is_not_warmed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "ragged",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "length"])],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    backend = CountingBackend(RuntimeConfig())
    with caplog.at_level(logging.INFO):
        backend.load(path)
    assert backend.runs == []
    assert "no warm-up" in caplog.text


def test_warm_up_sizes_follow_the_allowed_batch_sizes() -> None:
    assert RuntimeConfig().resolved_for(None).warmup_batch_sizes == (1,)
    allowed = BatchingConfig(max_batch_size=8, allowed_batch_sizes=(2, 8))
    assert RuntimeConfig().resolved_for(allowed).warmup_batch_sizes == (2, 8)
    assert RuntimeConfig(warmup_batch_sizes=()).resolved_for(allowed).warmup_batch_sizes == ()


def test_the_tf_serving_flag_turns_warm_up_off() -> None:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    flags = ["--model_name=m", "--model_base_path=/m"]
    default = cli.config_from_args(parser.parse_args(flags), {})
    assert default.runtime.warmup_batch_sizes == (1,)
    off = cli.config_from_args(parser.parse_args([*flags, "--enable_model_warmup=false"]), {})
    assert off.runtime.warmup_batch_sizes == ()
