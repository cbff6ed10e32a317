"""A float16 copy of a float32 ONNX model, for GPUs.

On a GPU with tensor cores, float16 runs the convolutions several times faster than
float32 and halves the weights' memory. The copy keeps the model's input and output
types (uint8 pixels in, float32 probabilities out), so clients, the gateway and the
TF Serving API see no difference. Whether accuracy holds is measured by the caller
(see :mod:`clothing.precision.half_cli`), never assumed.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def to_float16(model_file: Path) -> Any:
    """The model at ``model_file`` with float16 weights and activations, checked by ONNX."""
    import onnx
    from onnxconverter_common import float16

    # Every intermediate tensor needs a declared type for the converter to retype it.
    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_file)))
    with warnings.catch_warnings():
        # Weights too small for float16 are clamped to ±1e-7, with a warning for each.
        warnings.simplefilter("ignore", UserWarning)
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    _retarget_casts(half)
    onnx.checker.check_model(half)
    return half


def _retarget_casts(model: Any) -> None:
    """Point float-producing Casts at float16 where the converter retyped their output.

    The converter declares such a Cast's output (here: uint8 pixels to float) as
    float16 but leaves the Cast's ``to`` at float, a graph ONNX Runtime refuses.
    """
    from onnx import TensorProto

    half_tensors = {
        info.name
        for info in model.graph.value_info
        if info.type.tensor_type.elem_type == TensorProto.FLOAT16
    }
    for node in model.graph.node:
        if node.op_type != "Cast" or node.output[0] not in half_tensors:
            continue
        for attribute in node.attribute:
            if attribute.name == "to" and attribute.i == TensorProto.FLOAT:
                attribute.i = TensorProto.FLOAT16
