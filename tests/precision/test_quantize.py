"""int8 copies: same signature, close answers, served like any model, refused when worse."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, numpy_helper

from clothing.cli import main
from clothing.precision.quantize import calibration_photos, to_int8
from clothing.training.evaluate import evaluate
from tests.bundled import BUNDLED_INT8, bundled_version, int8_bundled
from tests.bundled import BUNDLED_MODEL as BUNDLED
from tests.environment import dataset
from tests.fixtures import build_test_model, run_model_server
from tests.images import noisy

COLOURS = {
    "hat": (0, 1, 2),
    "pants": (1, 2, 0),
    "shoes": (2, 0, 1),
}  # channel order, brightest first


def _colour_model(directory: Path) -> Path:
    """The test model over three classes, each the answer when its own channel is brightest."""
    path = build_test_model(directory, classes=tuple(COLOURS))
    model = onnx.load(str(path))
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name == "weights":
            weights = np.zeros((3, 3), np.float32)
            for column, order in enumerate(COLOURS.values()):
                weights[order[0], column] = 40.0
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(weights, "weights"))
        if tensor.name == "bias":
            zeros = np.zeros(3, np.float32)
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(zeros, "bias"))
    onnx.save(model, str(path))
    return path


def _draw_photos(root: Path, split: str, count: int, levels: tuple[int, int, int]) -> None:
    """``count`` noisy photos per class; its channels at ``levels`` (brightest first)."""
    rng = np.random.default_rng(len(split))
    for name, order in COLOURS.items():
        (root / split / name).mkdir(parents=True)
        colour = np.zeros(3)
        for rank, channel in enumerate(order):
            colour[channel] = levels[rank]
        for index in range(count):
            noisy(colour, (30, 40), 8, rng).save(root / split / name / f"{index}.png")


@pytest.fixture(scope="module")
def colour_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    _draw_photos(root, "train", 8, (220, 120, 40))
    _draw_photos(root, "validation", 4, (200, 110, 60))
    return root


def _run(model: Path | bytes, pixels: np.ndarray) -> np.ndarray:
    source = model if isinstance(model, bytes) else str(model)
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {session.get_inputs()[0].name: pixels})
    return np.asarray(output)


def test_the_copy_keeps_its_inputs_and_outputs_and_answers_alike(
    tmp_path: Path, colour_photos: Path
) -> None:
    source = build_test_model(tmp_path / "source" / "1")
    calibration = calibration_photos(
        colour_photos / "train",
        input_name="image",
        height=32,
        width=32,
        preprocessing="none",
        count=24,
    )
    assert calibration.pixels.shape == (16, 32, 32, 3)  # whole passes of 16
    int8 = to_int8(source, calibration)
    assert [(i.name, i.type.tensor_type.elem_type) for i in int8.graph.input] == [
        ("image", TensorProto.UINT8)
    ]
    assert [(o.name, o.type.tensor_type.elem_type) for o in int8.graph.output] == [
        ("probabilities", TensorProto.FLOAT)
    ]
    operators = {node.op_type for node in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators
    assert any(i.data_type == TensorProto.INT8 for i in int8.graph.initializer)
    pixels = calibration.pixels[::2]
    expected, got = _run(source, pixels), _run(int8.SerializeToString(), pixels)
    assert got.dtype == np.float32
    # The softmax stays float32: probabilities, not uint8 steps of 1/255.
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, expected, atol=0.03)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_the_command_writes_a_copy_the_model_server_serves(
    tmp_path: Path, colour_photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _colour_model(tmp_path / "source" / "3")
    output = tmp_path / "int8"
    flags = [f"--model={tmp_path / 'source'}", f"--data={colour_photos}", f"--output={output}"]
    assert main(["quantize", *flags]) == 0, capsys.readouterr().err
    assert "int8 1.0000" in capsys.readouterr().out
    metadata = json.loads((output / "3" / "metadata.json").read_text())
    assert metadata["precision"] == "int8"
    assert metadata["classes"] == list(COLOURS)
    check = metadata["metrics"]["int8_check"]
    assert check["top1_accuracy_int8"] == check["top1_accuracy_float32"] == 1.0
    assert check["data"] == "validation"  # the split, not a path on the machine that ran it
    assert check["recall_int8"] == {name: 1.0 for name in COLOURS}
    assert check["calibration"] == {
        "method": "minmax",
        "photos": 16,
        "data": "train",
        "rounding": "learned",
        "rounding_steps": 300,
    }
    assert evaluate(output, colour_photos / "validation").accuracy == 1.0

    row = np.full((32, 32, 3), (30, 90, 200), np.uint8)  # blue brightest: shoes
    expected = _run(source, row[np.newaxis])[0]
    with run_model_server(output) as server:
        body = json.dumps({"instances": [row.tolist()]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.rest_port}/v1/models/clothing-model:predict", body
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            (served,) = json.loads(answer.read())["predictions"]
    assert int(np.argmax(served)) == 2
    np.testing.assert_allclose(served, expected, atol=0.03)


def test_a_copy_that_loses_accuracy_is_refused_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Calibrated on dark photos, the int8 copy clips bright ones to the same values,
    # so every class looks alike: the float model tells them apart, the copy cannot.
    photos = tmp_path / "photos"
    _draw_photos(photos, "train", 8, (30, 20, 10))
    _draw_photos(photos, "validation", 4, (250, 200, 150))
    _colour_model(tmp_path / "source" / "1")
    output = tmp_path / "int8"
    flags = [f"--model={tmp_path / 'source'}", f"--data={photos}", f"--output={output}"]
    assert main(["quantize", *flags]) == 1
    err = capsys.readouterr().err
    assert "top-1 accuracy 1.0000 ->" in err
    assert "recall of pants 1.0000 -> 0.0000" in err
    assert "nothing written" in err
    assert not output.exists()


def test_bad_flags_and_data_are_refused(tmp_path: Path, colour_photos: Path) -> None:
    _colour_model(tmp_path / "source" / "1")
    flags = [f"--model={tmp_path / 'source'}", f"--data={colour_photos}", f"--output={tmp_path}/o"]
    assert main(["quantize", *flags, "--max-drop=-1"]) == 2
    assert main(["quantize", *flags, "--max-recall-drop=-1"]) == 2
    assert main(["quantize", *flags, "--calibration-photos=0"]) == 2
    assert main(["quantize", *flags, "--rounding-steps=0"]) == 2
    assert main(["quantize", f"--model={tmp_path / 'none'}", *flags[1:]]) == 2
    only_validation = [flags[0], f"--data={colour_photos / 'validation'}", flags[2]]
    assert main(["quantize", *only_validation]) == 2
    assert not (tmp_path / "o").exists()


def test_the_bundled_int8_copy_keeps_the_contract() -> None:
    if not int8_bundled():
        # `clothing up` then serves float32 (tests/test_precision_layout.py); the
        # accuracy test below shows the gate is why no copy is bundled.
        return
    source_version, copy_version = bundled_version(BUNDLED), bundled_version(BUNDLED_INT8)
    assert copy_version.name == source_version.name  # the same version of the same model
    source = onnx.load(str(source_version / "model.onnx"))
    copy_file = copy_version / "model.onnx"
    assert copy_file.stat().st_size < 5 * 1024 * 1024
    copy = onnx.load(str(copy_file))
    for ours, theirs in (
        (copy.graph.input, source.graph.input),
        (copy.graph.output, source.graph.output),
    ):
        assert [(v.name, v.type) for v in ours] == [(v.name, v.type) for v in theirs]
    metadata = json.loads((copy_version / "metadata.json").read_text())
    assert metadata["precision"] == "int8"
    assert metadata["name"] == "clothing-model"
    classes = (copy_version / "classes.txt").read_text()
    assert classes == (source_version / "classes.txt").read_text()


@pytest.mark.dataset
@pytest.mark.slow
@pytest.mark.timeout(1800)  # without a bundled copy it runs `clothing quantize` (12 min here)
def test_an_int8_copy_is_bundled_exactly_when_it_keeps_accuracy_and_every_class_recall(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = dataset()
    if not int8_bundled():
        # None bundled: quantizing the bundled model must then fail the gate.
        output = tmp_path / "int8"
        code = main(["quantize", f"--model={BUNDLED}", f"--data={photos}", f"--output={output}"])
        assert code == 1, "the int8 copy passes the gate: bundle it (make quantize)"
        assert "nothing written" in capsys.readouterr().err
        assert not output.exists()
        return
    source = evaluate(BUNDLED, photos / "validation")
    copy = evaluate(BUNDLED_INT8, photos / "validation")
    assert copy.images == source.images == 341
    assert (source.accuracy - copy.accuracy) * 100 <= 0.5 + 1e-9
    for before, after in zip(source.per_class, copy.per_class, strict=True):
        assert (before.recall - after.recall) * 100 <= 2.0 + 1e-9, before.name
    metadata = json.loads((bundled_version(BUNDLED_INT8) / "metadata.json").read_text())
    check = metadata["metrics"]["int8_check"]
    assert check["top1_accuracy_int8"] == pytest.approx(copy.accuracy, abs=1e-4)
