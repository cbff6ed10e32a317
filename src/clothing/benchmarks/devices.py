"""The devices a benchmark runs on, as ONNX Runtime execution providers (first choice first).

Every measured system gets the same providers, so a GPU run compares like with like.
"""

from __future__ import annotations

DEVICE_PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    # TensorRT builds an engine per input shape on first use; CUDA runs what it cannot.
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
DEVICES = tuple(DEVICE_PROVIDERS)


def providers_for(device: str) -> list[str]:
    """The providers for ``device``; a clear error when this ONNX Runtime lacks the first."""
    import onnxruntime

    if device not in DEVICE_PROVIDERS:
        raise ValueError(f"unknown device {device!r}; choose {', '.join(DEVICES)}")
    providers = list(DEVICE_PROVIDERS[device])
    available = onnxruntime.get_available_providers()
    if providers[0] not in available:
        raise RuntimeError(
            f"--device {device} needs onnxruntime-gpu with the {providers[0]}; "
            f"this onnxruntime has {', '.join(available)}"
        )
    return providers
