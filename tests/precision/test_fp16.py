"""float16 copies: same inputs and outputs, nearly the same answers, served like any model."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto

from clothing.cli import main
from clothing.precision.copies import accuracy_holds
from clothing.precision.half import to_float16
from tests.bundled import BUNDLED_MODEL as BUNDLED
from tests.bundled import bundled_version
from tests.environment import dataset
from tests.fixtures import build_test_model, run_model_server


def _run(model: Path, pixels: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {session.get_inputs()[0].name: pixels})
    return np.asarray(output)


def test_the_copy_keeps_its_inputs_and_outputs_and_answers_alike(tmp_path: Path) -> None:
    source = build_test_model(tmp_path / "source" / "1")
    half = to_float16(source)
    assert [(i.name, i.type.tensor_type.elem_type) for i in half.graph.input] == [
        ("image", TensorProto.UINT8)
    ]
    assert [o.type.tensor_type.elem_type for o in half.graph.output] == [TensorProto.FLOAT]
    assert any(i.data_type == TensorProto.FLOAT16 for i in half.graph.initializer)
    copy = tmp_path / "copy.onnx"
    onnx.save(half, str(copy))
    pixels = np.random.default_rng(0).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    expected, got = _run(source, pixels), _run(copy, pixels)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


@pytest.mark.parametrize(
    ("source", "copy", "max_drop", "holds"),
    [
        (0.9032, 0.9032, 0.5, True),
        (0.9032, 0.8982, 0.5, True),  # exactly 0.5 points
        (0.9032, 0.8972, 0.5, False),
        (0.90, 0.91, 0.0, True),
    ],
)
def test_accuracy_holds_within_the_allowed_drop(
    source: float, copy: float, max_drop: float, holds: bool
) -> None:
    assert accuracy_holds(source, copy, max_drop) is holds


def test_the_command_writes_a_copy_the_model_server_serves(
    tmp_path: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_test_model(tmp_path / "source" / "3")
    output = tmp_path / "half"
    code = main(
        ["fp16", f"--model={tmp_path / 'source'}", f"--data={tiny_dataset}", f"--output={output}"]
    )
    assert code == 0, capsys.readouterr().err
    assert "float32" in capsys.readouterr().out
    metadata = json.loads((output / "3" / "metadata.json").read_text())
    assert metadata["precision"] == "float16"
    check = metadata["metrics"]["float16_check"]
    assert check["top1_accuracy_float16"] == check["top1_accuracy_float32"]
    with run_model_server(output) as server:
        body = json.dumps({"instances": [[[[0, 128, 255]] * 32] * 32]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.rest_port}/v1/models/clothing-model:predict", body
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            predictions = json.loads(answer.read())["predictions"]
    assert len(predictions) == 1
    assert sum(predictions[0]) == pytest.approx(1.0, abs=1e-3)


def test_bad_flags_are_refused(tmp_path: Path, tiny_dataset: Path) -> None:
    build_test_model(tmp_path / "source" / "1")
    flags = [f"--model={tmp_path / 'source'}", f"--data={tiny_dataset}", f"--output={tmp_path}"]
    assert main(["fp16", *flags, "--max-drop=-1"]) == 2
    assert main(["fp16", f"--model={tmp_path / 'none'}", *flags[1:]]) == 2


def test_the_bundled_model_keeps_its_accuracy_in_float16(tmp_path: Path) -> None:
    code = main(["fp16", f"--model={BUNDLED}", f"--data={dataset()}", f"--output={tmp_path}"])
    assert code == 0
    copy = tmp_path / bundled_version().name  # the copy keeps the source's version
    check = json.loads((copy / "metadata.json").read_text())["metrics"]["float16_check"]
    assert check["images"] == 341
    assert check["top1_accuracy_float32"] - check["top1_accuracy_float16"] <= 0.005
    assert check["top1_agreement"] >= 0.99
