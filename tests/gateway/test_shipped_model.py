"""The shipped model, served the way production serves it: ``clothing model-server`` and
``clothing gateway`` as processes on loopback, photos in over HTTP, labels out.

The accuracy it must reach is the one its own ``metadata.json`` records (what
``MODEL_CARD.md`` states), so a new model brings its own figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.bundled import BUNDLED_MODEL, bundled_version
from tests.environment import dataset, require
from tests.fixtures import run_gateway, run_model_server

pytestmark = [pytest.mark.slow, pytest.mark.dataset]

BATCH = 16  # the gateway's default --max-batch


def _recorded() -> dict[str, float]:
    """The validation accuracy and photo count the newest bundled version records."""
    require(BUNDLED_MODEL.is_dir(), f"no bundled model in {BUNDLED_MODEL}")
    metrics = json.loads((bundled_version() / "metadata.json").read_text())["metrics"]
    return {
        "accuracy": float(metrics["evaluation"]["top1_accuracy"]),
        "images": float(metrics["evaluation"]["images"]),
    }


def _labelled_photos(validation: Path) -> list[tuple[Path, str]]:
    return [
        (photo, folder.name)
        for folder in sorted(p for p in validation.iterdir() if p.is_dir())
        for photo in sorted(folder.glob("*.jpg"))
    ]


def test_the_shipped_model_classifies_validation_photos_through_both_tiers() -> None:
    recorded = _recorded()
    photos = _labelled_photos(dataset() / "validation")
    assert len(photos) == recorded["images"]
    correct = 0
    with (
        run_model_server(BUNDLED_MODEL, ready_timeout=120) as server,
        run_gateway(server.grpc_address, "--grpc-deadline=60") as gateway,
        httpx.Client(base_url=gateway.url, timeout=120) as client,
    ):
        ready = client.get("/readyz").json()
        assert ready["model"]["name"] == "clothing-model"
        for start in range(0, len(photos), BATCH):
            chunk = photos[start : start + BATCH]
            files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p, _ in chunk]
            answer = client.post("/predict/batch", files=files)
            assert answer.status_code == 200, answer.text
            results = answer.json()["results"]
            assert len(results) == len(chunk)
            for (_, truth), result in zip(chunk, results, strict=True):
                assert "error" not in result, result
                correct += result["label"] == truth
    accuracy = correct / len(photos)
    print(f"shipped model through gateway: {correct}/{len(photos)} = {accuracy:.4f}")
    # The gateway resizes exactly as the evaluation does: the same photos, the same answers.
    assert accuracy == pytest.approx(recorded["accuracy"], abs=1.5 / len(photos))
