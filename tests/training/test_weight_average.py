"""`clothing export` with several checkpoints: one network holding the mean of their weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from clothing.cli import main
from clothing.training.network import ServingModel, build_network

SIZE = 64
CLASSES = ["hat", "pants", "shoes"]


def write_checkpoint(
    path: Path, seed: int, *, arch: str = "lite0", classes: list[str] = CLASSES
) -> Path:
    """A checkpoint as `clothing train` writes it, with seeded random weights."""
    torch.manual_seed(seed)
    network = build_network(arch, len(classes), SIZE, SIZE, pretrained=False)
    training = {
        "arch": arch,
        "image_size": SIZE,
        "serve_image_size": SIZE,
        "ema_decay": 0.998,
        "seed": seed,
        "command": f"clothing train --seed {seed}",
    }
    stored = {
        "state_dict": network.state_dict(),
        "classes": classes,
        "training": training,
        "metrics": {"validation_accuracy": seed / 100},
    }
    torch.save(stored, path)
    return path


def probabilities(model_file: Path, images: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(model_file, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"image": images})[0])


def test_several_checkpoints_export_as_the_mean_of_their_weights(tmp_path: Path) -> None:
    first = write_checkpoint(tmp_path / "a.pt", 1)
    second = write_checkpoint(tmp_path / "b.pt", 2)
    model_dir = tmp_path / "clothing-model"
    code = main(["export", "--checkpoint", str(first), str(second), f"--model-dir={model_dir}"])
    assert code == 0

    # The same mean, computed here from the two files.
    states = [torch.load(path, weights_only=True)["state_dict"] for path in (first, second)]
    mean = {
        name: (states[0][name] + states[1][name]) / 2 if tensor.is_floating_point() else tensor
        for name, tensor in states[0].items()
    }
    network = build_network("lite0", len(CLASSES), SIZE, SIZE, pretrained=False)
    network.load_state_dict(mean)
    expected_model = ServingModel(network).eval()
    images = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = expected_model(torch.from_numpy(images)).numpy()
    exported = probabilities(model_dir / "1" / "model.onnx", images)
    np.testing.assert_allclose(exported, expected, atol=1e-5)

    # Neither run alone gives those answers.
    for single, name in ((first, "2"), (second, "3")):
        assert main(["export", f"--checkpoint={single}", f"--model-dir={model_dir}"]) == 0
        alone = probabilities(model_dir / name / "model.onnx", images)
        assert np.abs(alone - exported).max() > 1e-3

    info = json.loads((model_dir / "1" / "metadata.json").read_text())
    training = info["training"]
    assert training["arch"] == "lite0"
    assert training["ema_decay"] == 0.998
    assert "seed" not in training
    assert [run["seed"] for run in training["averaged_runs"]] == [1, 2]
    assert [run["command"] for run in training["averaged_runs"]] == [
        "clothing train --seed 1",
        "clothing train --seed 2",
    ]
    assert [run["validation_accuracy"] for run in training["averaged_runs"]] == [0.01, 0.02]
    # A run's own best accuracy is not the averaged network's.
    assert "validation_accuracy" not in info["metrics"]


@pytest.mark.parametrize(
    ("arch", "classes", "message"),
    [
        ("lite0", ["hat", "pants", "skirt"], "classes differ"),
        ("lite1", CLASSES, "checkpoints differ in arch"),
    ],
)
def test_checkpoints_of_different_networks_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arch: str, classes: list[str], message: str
) -> None:
    first = write_checkpoint(tmp_path / "a.pt", 1)
    second = write_checkpoint(tmp_path / "b.pt", 2, arch=arch, classes=classes)
    model_dir = tmp_path / "clothing-model"
    code = main(["export", "--checkpoint", str(first), str(second), f"--model-dir={model_dir}"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not model_dir.exists() or not any(model_dir.iterdir())
