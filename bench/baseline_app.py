"""The baseline: the workshop design of this service, kept for comparison.

One FastAPI + ONNX Runtime process. Each request is decoded with plain Pillow (full
decode, then resize) and gets its own ``session.run``: no batching, no separate
model server. URLs are fetched with ``urllib``. Same request and answer shape as the
gateway (``POST /predict`` with ``{"image_b64"}`` or ``{"url"}``).

    python -m bench.baseline_app --port 9000 --model-base-path models/clothing-model
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import uvicorn
from fastapi import FastAPI, HTTPException

from clothing.benchmarks.devices import DEVICE_PROVIDERS, DEVICES
from clothing.benchmarks.plain import (
    BadImageError,
    class_answer,
    image_bytes_from_body,
    plain_decode,
    plain_fetch,
)
from clothing.serving_layout import read_metadata


def create_app(model_base_path: Path, providers: list[str]) -> FastAPI:
    info = read_metadata(model_base_path)
    session = onnxruntime.InferenceSession(str(info.model_file), providers=providers)
    app = FastAPI(title="clothing baseline")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # A plain `def`: FastAPI runs it in its thread pool, as the workshop app did.
    @app.post("/predict")
    def predict(body: dict[str, Any]) -> dict[str, Any]:
        try:
            data = image_bytes_from_body(body, plain_fetch)
            pixels = plain_decode(data, info.width, info.height)
        except BadImageError as error:
            raise HTTPException(status_code=400, detail=str(error)) from error
        batch = info.to_model_input(pixels[np.newaxis])
        (probabilities,) = session.run([info.output_name], {info.input_name: batch})
        return class_answer(probabilities[0], info.classes)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=9000, help="HTTP port")
    parser.add_argument("--model-base-path", type=Path, required=True, help="model repository")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="ORT providers")
    args = parser.parse_args()
    app = create_app(args.model_base_path, list(DEVICE_PROVIDERS[args.device]))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
