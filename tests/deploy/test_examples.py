"""The example requests in README.md, docs/deploy.md and docker-compose.yaml can succeed.

They send the bundled photo ``docs/examples/pants.jpg`` (an upload needs no
network and no allow-listed host), and the bundled model, fed through the
gateway's own preprocessing, calls it pants.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from clothing.gateway.imaging import InputSpec, prepare
from tests.bundled import bundled_version
from tests.deploy.manifests import COMPOSE_FILE, DOCS, ROOT

EXAMPLE = "docs/examples/pants.jpg"
MODEL = bundled_version()
DOCUMENTS = [ROOT / "README.md", DOCS, COMPOSE_FILE]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_examples_upload_the_bundled_photo(document: Path) -> None:
    text = document.read_text()
    uploads = re.findall(r"-F file=@(\S+)", text)
    assert uploads, "no upload example"
    assert set(uploads) == {EXAMPLE}
    # No example points at a URL that does not serve a photo.
    assert "example.com/" not in text
    assert "bit.ly/" not in text


def test_the_bundled_model_calls_the_photo_pants() -> None:
    import onnxruntime as ort

    classes = (MODEL / "classes.txt").read_text().split()
    session = ort.InferenceSession(str(MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    height, width = model_input.shape[1:3]
    row = prepare((ROOT / EXAMPLE).read_bytes(), InputSpec(model_input.name, height, width))
    (probabilities,) = session.run(None, {model_input.name: row[np.newaxis]})[0]
    assert classes[int(np.argmax(probabilities))] == "pants"
    # Label smoothing (0.1) keeps the model's top probability under about 0.9.
    assert float(np.max(probabilities)) > 0.8
