"""The same service built on LitServe, an established serving framework from PyPI.

Configured the way LitServe's docs describe batching: ``max_batch_size`` and
``batch_timeout`` on the ``LitAPI``, ``batch``/``unbatch`` around a batched
``predict``, and several workers per device so decoding on one worker overlaps
inference on another. Each worker's ONNX Runtime gets its share of the cores.
Same request and answer shape as the gateway.

    python -m bench.litserve_app --port 9100 --model-base-path models/clothing-model
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
from fastapi import HTTPException

from clothing.benchmarks.devices import DEVICE_PROVIDERS, DEVICES
from clothing.benchmarks.plain import (
    BadImageError,
    class_answer,
    image_bytes_from_body,
    plain_decode,
    plain_fetch,
)
from clothing.serving_layout import ModelMetadata, read_metadata


class ClothingAPI(ls.LitAPI):
    def __init__(self, model_base_path: Path, threads: int, device: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_base_path = model_base_path
        self.threads = threads
        self.device_name = device
        self.info: ModelMetadata | None = None

    def setup(self, device: Any) -> None:
        import onnxruntime

        self.info = read_metadata(self.model_base_path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        self.session = onnxruntime.InferenceSession(
            str(self.info.model_file), options, providers=list(DEVICE_PROVIDERS[self.device_name])
        )

    # No annotation on `request`: LitServe then hands over the parsed JSON body.
    def decode_request(self, request):
        assert self.info is not None
        try:
            data = image_bytes_from_body(request, plain_fetch)
            return plain_decode(data, self.info.width, self.info.height)
        except BadImageError as error:
            raise HTTPException(status_code=400, detail=str(error)) from error

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        assert self.info is not None
        (probabilities,) = self.session.run(
            [self.info.output_name], {self.info.input_name: self.info.to_model_input(x)}
        )
        return np.asarray(probabilities)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        assert self.info is not None
        return class_answer(output, self.info.classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=9100, help="HTTP port")
    parser.add_argument("--model-base-path", type=Path, required=True, help="model repository")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="ORT providers")
    parser.add_argument("--workers", type=int, default=2, help="inference workers per device")
    parser.add_argument("--max-batch-size", type=int, default=16, help="LitServe max_batch_size")
    parser.add_argument(
        "--batch-timeout", type=float, default=0.01, help="LitServe batch_timeout (seconds)"
    )
    args = parser.parse_args()
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    api = ClothingAPI(
        args.model_base_path,
        threads,
        args.device,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
    )
    accelerator = "cpu" if args.device == "cpu" else "cuda"  # TensorRT runs on a CUDA device
    server = ls.LitServer(api, accelerator=accelerator, workers_per_device=args.workers)
    server.run(host=args.host, port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
