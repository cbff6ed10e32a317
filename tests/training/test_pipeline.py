"""Train on a tiny set, export, check the ONNX graph, evaluate it and serve it."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from google.protobuf import struct_pb2

from clothing.cli import main
from clothing.proto.tensorflow.core.framework import types_pb2
from clothing.proto.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    prediction_service_pb2_grpc,
)
from clothing.training.checkpoint import load_checkpoint
from clothing.training.data import list_classes, list_images, load_batch
from clothing.training.evaluate import evaluate
from clothing.training.export import onnx_bytes, parity_error, serving_model
from tests.fixtures import run_model_server
from tests.training.conftest import TINY_CLASSES

SIZE = 64
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cached and one live epoch at 64 px on three classes: a real checkpoint in seconds."""
    output = tmp_path_factory.mktemp("train")
    code = main(
        [
            "train",
            f"--data={tiny_dataset}",
            f"--output={output}",
            f"--image-size={SIZE}",
            "--epochs=1",
            "--batch-size=8",
            "--augment-views=1",
            "--trainable-blocks=2",
            "--full-epochs=1",
            "--frozen-blocks=4",
            "--no-progress",
        ]
    )
    assert code == 0
    return output


@pytest.fixture(scope="module")
def exported(trained: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("models") / "clothing-model"
    code = main(
        [
            "export",
            f"--checkpoint={trained / 'checkpoint.pt'}",
            f"--model-dir={model_dir}",
            f"--check-data={tiny_dataset / 'validation'}",
        ]
    )
    assert code == 0
    return model_dir


def real_images(tiny_dataset: Path) -> np.ndarray:
    folder = tiny_dataset / "validation"
    images = list_images(folder, list_classes(folder))
    return load_batch(list(images.paths), SIZE, SIZE)


def test_training_writes_checkpoint_classes_and_history(trained: Path) -> None:
    assert (trained / "classes.txt").read_text().split() == list(TINY_CLASSES)
    history = json.loads((trained / "history.json").read_text())
    assert [epoch["stage"] for epoch in history["epochs"]] == ["cached", "full"]
    for epoch in history["epochs"]:
        assert 0.0 <= epoch["validation_accuracy"] <= 1.0
        assert epoch["train_loss"] > 0
    assert history["training"]["seed"] == 1234
    assert len(history["training"]["data_sha256"]) == 64
    checkpoint = load_checkpoint(trained / "checkpoint.pt")
    assert checkpoint.classes == list(TINY_CLASSES)
    assert checkpoint.image_size == SIZE


def test_export_layout_signature_and_metadata(exported: Path) -> None:
    version = exported / "1"
    assert sorted(p.name for p in version.iterdir()) == [
        "classes.txt",
        "metadata.json",
        "model.onnx",
    ]
    model = onnx.load(version / "model.onnx")
    assert model.opset_import[0].version >= 17
    (graph_input,) = model.graph.input
    assert graph_input.name == "image"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [SIZE, SIZE, 3]
    assert [o.name for o in model.graph.output] == ["probabilities"]

    info = json.loads((version / "metadata.json").read_text())
    assert info["name"] == "clothing-model"
    assert info["classes"] == list(TINY_CLASSES)
    assert info["input"] == {
        "name": "image",
        "dtype": "uint8",
        "layout": "NHWC",
        "height": SIZE,
        "width": SIZE,
        "preprocessing": "none",
    }
    assert info["output"] == {"name": "probabilities"}
    assert info["training"]["arch"] == "lite0"
    assert info["training"]["flip_average"] is False
    assert info["metrics"]["onnx_vs_torch_max_abs_diff"] <= 1e-4

    session = onnxruntime.InferenceSession(str(version / "model.onnx"))
    for batch in (1, 5):
        pixels = np.random.default_rng(batch).integers(0, 256, (batch, SIZE, SIZE, 3), np.uint8)
        (probabilities,) = session.run(["probabilities"], {"image": pixels})
        assert probabilities.shape == (batch, len(TINY_CLASSES))
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_onnx_runtime_matches_pytorch_on_real_images(trained: Path, tiny_dataset: Path) -> None:
    model = serving_model(load_checkpoint(trained / "checkpoint.pt"))
    images = real_images(tiny_dataset)
    error = parity_error(model, onnx_bytes(model, SIZE), images)
    assert error <= 1e-4


def test_flip_average_matches_pytorch_and_is_mirror_symmetric(
    trained: Path, tiny_dataset: Path
) -> None:
    checkpoint = load_checkpoint(trained / "checkpoint.pt")
    model = serving_model(checkpoint, flip_average=True)
    images = real_images(tiny_dataset)
    assert parity_error(model, onnx_bytes(model, SIZE), images) <= 1e-4
    with torch.no_grad():
        pixels = torch.from_numpy(images)
        averaged = model(pixels)
        mirrored = model(pixels.flip(dims=(2,)))
        plain = serving_model(checkpoint)
        expected = (plain(pixels) + plain(pixels.flip(dims=(2,)))) / 2
    torch.testing.assert_close(averaged, expected, atol=1e-6, rtol=1e-5)
    # A photo and its mirror image get the same answer once both are averaged.
    torch.testing.assert_close(averaged, mirrored, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(averaged, plain(pixels), atol=1e-6)


def test_export_records_flip_average(trained: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    code = main(
        [
            "export",
            f"--checkpoint={trained / 'checkpoint.pt'}",
            f"--model-dir={tmp_path}",
            "--flip-average",
            f"--check-data={tiny_dataset / 'validation'}",
        ]
    )
    assert code == 0
    info = json.loads((tmp_path / "1" / "metadata.json").read_text())
    assert info["training"]["flip_average"] is True
    assert info["metrics"]["onnx_vs_torch_max_abs_diff"] <= 1e-4
    session = onnxruntime.InferenceSession(str(tmp_path / "1" / "model.onnx"))
    images = real_images(tiny_dataset)
    for batch in (1, len(images)):
        (probabilities,) = session.run(["probabilities"], {"image": images[:batch]})
        assert probabilities.shape == (batch, len(TINY_CLASSES))
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_export_is_byte_stable(trained: Path, exported: Path) -> None:
    code = main(["export", f"--checkpoint={trained / 'checkpoint.pt'}", f"--model-dir={exported}"])
    assert code == 0
    first, second = exported / "1", exported / "2"
    assert (second / "model.onnx").read_bytes() == (first / "model.onnx").read_bytes()
    assert (second / "classes.txt").read_text() == (first / "classes.txt").read_text()


def test_export_refuses_to_overwrite_and_rejects_bad_checkpoints(
    trained: Path, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = f"--checkpoint={trained / 'checkpoint.pt'}"
    assert main(["export", checkpoint, f"--model-dir={exported}", "--version=1"]) == 2
    assert "already holds a model" in capsys.readouterr().err
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": []}, bogus)
    assert main(["export", f"--checkpoint={bogus}", f"--model-dir={tmp_path}"]) == 2
    assert "not a training checkpoint" in capsys.readouterr().err
    assert main(["export", f"--checkpoint={tmp_path / 'none.pt'}"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_evaluate_reports_and_writes_files(
    exported: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = evaluate(exported / "1", tiny_dataset / "validation")
    assert result.images == 3 * len(TINY_CLASSES)
    assert result.matrix.sum() == result.images
    assert result.classes == list(TINY_CLASSES)

    code = main(
        ["evaluate", f"--data={tiny_dataset}", f"--model={exported}", f"--output={tmp_path}"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"top-1 accuracy: {result.accuracy:.4f}" in printed
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["top1_accuracy"] == pytest.approx(result.accuracy)
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 0


def test_evaluate_rejects_unknown_classes_and_missing_models(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data" / "socks").mkdir(parents=True)
    assert main(["evaluate", f"--data={tmp_path / 'data'}", f"--model={exported}"]) == 2
    assert "does not know: socks" in capsys.readouterr().err
    assert main(["evaluate", f"--data={tmp_path}", f"--model={tmp_path / 'none'}"]) == 2
    assert "no model.onnx" in capsys.readouterr().err


def test_train_rejects_unknown_classes(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", f"--data={tiny_dataset}", f"--output={tmp_path}", "--classes=hat,socks"])
    assert code == 2
    assert "unknown classes socks" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--ema-decay=1", "--ema-decay must be at least 0 and below 1"),
        ("--full-epochs=-1", "--full-epochs must be 0 or more"),
        ("--frozen-blocks=-2", "--frozen-blocks must be 0 or more"),
        ("--frozen-blocks=99", "--frozen-blocks must be between 0 and 16"),
    ],
)
def test_train_rejects_bad_live_stage_options(
    tiny_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    message: str,
) -> None:
    arguments = ["train", f"--data={tiny_dataset}", f"--output={tmp_path}", "--image-size=32"]
    code = main([*arguments, "--epochs=0", "--head-epochs=0", "--full-epochs=1", option])
    assert code == 2
    assert message in capsys.readouterr().err


def test_model_server_serves_the_export_with_its_classes(exported: Path) -> None:
    with (
        run_model_server(exported) as server,
        grpc.insecure_channel(server.grpc_address) as channel,
    ):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = "clothing-model"
        request.metadata_field.extend(["signature_def", "model_info"])
        response = stub.GetModelMetadata(request, timeout=30)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        assert response.metadata["signature_def"].Unpack(signatures)
        signature = signatures.signature_def["serving_default"]
        assert signature.method_name == "tensorflow/serving/predict"
        image = signature.inputs["image"]
        assert image.dtype == types_pb2.DT_UINT8
        assert [d.size for d in image.tensor_shape.dim] == [-1, SIZE, SIZE, 3]
        outputs = signature.outputs["probabilities"]
        assert [d.size for d in outputs.tensor_shape.dim] == [-1, len(TINY_CLASSES)]
        info = struct_pb2.Struct()
        assert response.metadata["model_info"].Unpack(info)
        assert list(info["classes"]) == list(TINY_CLASSES)
        assert info["input"]["preprocessing"] == "none"
