"""The model shipped in models/clothing-model/1: contract, size and accuracy."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest

from clothing.training.evaluate import evaluate
from tests.environment import BUNDLED_MODEL, dataset, require
from tests.fixtures import CLASSES

BUNDLED = BUNDLED_MODEL / "1"
MAX_BYTES = 20 * 1024 * 1024
TARGET_ACCURACY = 0.90
# What the shipped version measures (MODEL_CARD.md); a new version must not fall below.
FLOOR_ACCURACY = 0.88


@pytest.fixture(autouse=True)
def _bundled_model_present() -> None:
    require((BUNDLED / "model.onnx").is_file(), f"no bundled model at {BUNDLED}")


def test_bundled_model_follows_the_serving_contract() -> None:
    assert (BUNDLED / "model.onnx").stat().st_size <= MAX_BYTES
    info = json.loads((BUNDLED / "metadata.json").read_text())
    assert info["name"] == "clothing-model"
    assert tuple(info["classes"]) == CLASSES
    assert (BUNDLED / "classes.txt").read_text().split() == list(CLASSES)
    declared = info["input"]
    assert declared["dtype"] == "uint8"
    assert declared["layout"] == "NHWC"
    assert declared["preprocessing"] == "none"
    assert info["output"] == {"name": "probabilities"}
    assert info["training"]["seed"] == 1234
    assert info["metrics"]["validation_accuracy"] >= FLOOR_ACCURACY

    model = onnx.load(BUNDLED / "model.onnx")
    assert model.opset_import[0].version >= 17
    session = onnxruntime.InferenceSession(str(BUNDLED / "model.onnx"))
    height, width = declared["height"], declared["width"]
    assert session.get_inputs()[0].shape == ["batch", height, width, 3]
    pixels = np.random.default_rng(0).integers(0, 256, (2, height, width, 3), np.uint8)
    (probabilities,) = session.run(["probabilities"], {"image": pixels})
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def measured_accuracy() -> float:
    result = evaluate(BUNDLED, dataset() / "validation")
    assert result.images == 341
    return result.accuracy


@pytest.mark.dataset
@pytest.mark.slow
def test_bundled_model_accuracy_matches_its_metadata(measured_accuracy: float) -> None:
    recorded = json.loads((BUNDLED / "metadata.json").read_text())["metrics"]
    assert measured_accuracy >= FLOOR_ACCURACY
    assert measured_accuracy == pytest.approx(recorded["validation_accuracy"], abs=0.006)


@pytest.mark.dataset
@pytest.mark.slow
def test_bundled_model_reaches_target_accuracy(measured_accuracy: float) -> None:
    assert measured_accuracy >= TARGET_ACCURACY
