"""Checkpoint -> ONNX in the serving layout, byte-stable, checked against PyTorch.

Writes ``<model_dir>/<version>/model.onnx`` with input ``image`` (uint8 NHWC,
dynamic batch) and output ``probabilities`` (softmax), plus ``classes.txt`` and
``metadata.json``. The same weights always give the same bytes: the exporter's
producer fields are overwritten and nothing time-dependent is stored.

Several checkpoints of one recipe (runs that differ in their seed) can be
exported as one network whose every weight is their mean (a uniform "model
soup"): runs fine-tuned from the same pretrained weights land in one basin, and
their mean often scores above each run at one network's cost.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from clothing import __version__
from clothing.serving_layout import (
    MODEL_FILE,
    declare,
    version_files,
    version_to_write,
    write_version,
)
from clothing.training.checkpoint import Checkpoint, load_checkpoint
from clothing.training.network import ServingModel, build_network

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
MODEL_NAME = "clothing-model"
PARITY_TOLERANCE = 1e-4


class ExportError(ValueError):
    """The checkpoint or the target folder cannot be exported to."""


# What must agree for weights to be averaged: the same network, classes and input.
_SHARED_RECIPE = ("arch", "image_size", "serve_image_size")


def average_checkpoints(checkpoints: Sequence[Checkpoint]) -> Checkpoint:
    """One checkpoint whose floating-point tensors are the mean of ``checkpoints``'.

    Integer tensors (batch-norm counters) are taken from the first. The recipe
    fields all runs share are kept once; ``averaged_runs`` lists the rest of each
    run's (its seed, command, best epoch) with its best validation accuracy.
    """
    if not checkpoints:
        raise ExportError("no checkpoint to export")
    first = checkpoints[0]
    if len(checkpoints) == 1:
        return first
    for other in checkpoints[1:]:
        if other.classes != first.classes:
            raise ExportError(f"classes differ: {first.classes} and {other.classes}")
        for key in _SHARED_RECIPE:
            if other.training.get(key) != first.training.get(key):
                raise ExportError(
                    f"checkpoints differ in {key} ({first.training.get(key)} and"
                    f" {other.training.get(key)}): only runs of one network can be averaged"
                )
        if other.state_dict.keys() != first.state_dict.keys() or any(
            other.state_dict[name].shape != tensor.shape
            for name, tensor in first.state_dict.items()
        ):
            raise ExportError("checkpoints hold different tensors")
    state = {
        name: torch.stack([c.state_dict[name] for c in checkpoints]).mean(dim=0)
        if tensor.is_floating_point()
        else tensor
        for name, tensor in first.state_dict.items()
    }
    shared = {
        key: value
        for key, value in first.training.items()
        if all(c.training.get(key) == value for c in checkpoints)
    }
    runs = [
        {key: value for key, value in c.training.items() if key not in shared}
        | {"validation_accuracy": c.metrics.get("validation_accuracy")}
        for c in checkpoints
    ]
    # A run's best validation accuracy says nothing of the mean network's:
    # `clothing evaluate --update-metadata` measures that.
    return Checkpoint(state, first.classes, shared | {"averaged_runs": runs}, {})


def load_checkpoints(paths: Sequence[Path]) -> Checkpoint:
    """One checkpoint, or the weight average of several (see :func:`average_checkpoints`)."""
    return average_checkpoints([load_checkpoint(path) for path in paths])


def serving_model(checkpoint: Checkpoint, *, flip_average: bool = False) -> ServingModel:
    size = checkpoint.image_size
    network = build_network(checkpoint.arch, len(checkpoint.classes), size, size, pretrained=False)
    network.load_state_dict(checkpoint.state_dict)
    return ServingModel(network, flip_average=flip_average).eval()


def onnx_bytes(model: ServingModel, size: int) -> bytes:
    """Trace ``model`` to ONNX and return canonical serialized bytes."""
    example = torch.zeros((1, size, size, 3), dtype=torch.uint8)
    with (
        tempfile.TemporaryDirectory(prefix="clothing-export-") as scratch,
        warnings.catch_warnings(),
    ):
        traced = Path(scratch) / "traced.onnx"
        # The TorchScript exporter announces its own deprecation; it is the
        # one that needs no onnxscript and gives stable graphs.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            traced,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
        proto = onnx.load(traced)
    proto.producer_name = "clothing-classifier"
    proto.producer_version = __version__
    proto.doc_string = ""
    proto.graph.name = MODEL_NAME
    proto.graph.doc_string = ""
    del proto.metadata_props[:]
    for node in proto.graph.node:
        node.doc_string = ""
    onnx.checker.check_model(proto)
    return proto.SerializeToString(deterministic=True)


def parity_error(model: ServingModel, model_bytes: bytes, images: np.ndarray) -> float:
    """Largest absolute difference between ONNX Runtime and PyTorch on ``images``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (from_onnx,) = session.run([OUTPUT_NAME], {INPUT_NAME: images})
    with torch.no_grad():
        from_torch = model(torch.from_numpy(images)).numpy()
    return float(np.max(np.abs(np.asarray(from_onnx) - from_torch)))


def metadata(
    checkpoint: Checkpoint, parity: float | None, *, flip_average: bool = False
) -> dict[str, Any]:
    size = checkpoint.image_size
    metrics = dict(checkpoint.metrics)
    if parity is not None:
        metrics["onnx_vs_torch_max_abs_diff"] = parity
    return {
        "name": MODEL_NAME,
        **declare(
            classes=checkpoint.classes,
            input_name=INPUT_NAME,
            input_dtype="uint8",
            height=size,
            width=size,
            preprocessing="none",
            output_name=OUTPUT_NAME,
        ),
        "training": {
            **checkpoint.training,
            "normalisation": "(x - 127) / 128 inside the graph",
            "opset": OPSET,
            # Test-time augmentation baked into the graph at export.
            "flip_average": flip_average,
        },
        "metrics": metrics,
    }


@dataclass(frozen=True)
class ExportResult:
    directory: Path
    model_path: Path
    parity: float | None


def export(
    checkpoint: Checkpoint,
    model_dir: Path,
    *,
    version: int | None = None,
    check_images: np.ndarray | None = None,
    overwrite: bool = False,
    flip_average: bool = False,
) -> ExportResult:
    """Write one version folder; with ``check_images`` also verify ONNX vs PyTorch.

    ``checkpoint`` comes from :func:`load_checkpoints` (one run, or the average of
    several). ``flip_average`` makes the graph average the softmax of each photo and its
    mirror image.
    """
    version = version_to_write(model_dir, version, overwrite=overwrite)
    model = serving_model(checkpoint, flip_average=flip_average)
    model_bytes = onnx_bytes(model, checkpoint.image_size)
    parity = None
    if check_images is not None:
        parity = parity_error(model, model_bytes, check_images)
        if parity > PARITY_TOLERANCE:
            raise ExportError(
                f"ONNX Runtime differs from PyTorch by {parity:.2e} (> {PARITY_TOLERANCE})"
            )
    info = metadata(checkpoint, parity, flip_average=flip_average)
    files = version_files(model_bytes, checkpoint.classes, info)
    target = write_version(model_dir, version, files, overwrite=overwrite)
    return ExportResult(target, target / MODEL_FILE, parity)
