"""Edits to a converted ONNX graph, with ``onnx.helper`` only (no TensorFlow).

The converter names tensors after TensorFlow's internals (``Identity:0``); the
served model keeps the Keras model's own input and output names, so clients
written for TF Serving (``outputs['dense_7']``) work unchanged. Two optional
wrappers: a uint8 input that applies the preprocessing inside the graph, and a
Softmax after a model that ends in logits.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from clothing.preprocessing import SCALING_STEPS, Preprocessing

_OPERATORS = {"div": "Div", "sub": "Sub"}


class GraphError(ValueError):
    """The graph does not have the shape a served classifier needs."""


def single_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise GraphError(f"the graph has {len(inputs)} inputs; a served classifier takes one")
    return inputs[0]


def single_output(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    if len(model.graph.output) != 1:
        names = [o.name for o in model.graph.output]
        raise GraphError(f"the graph has {len(names)} outputs {names}; one is needed")
    return model.graph.output[0]


def rename_tensor(model: onnx.ModelProto, old: str, new: str) -> None:
    """Give tensor ``old`` the name ``new`` everywhere it is produced or consumed."""
    if old == new:
        return
    graph = model.graph
    _rename_in_nodes(model, old, new)
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new


def name_io(model: onnx.ModelProto, input_name: str, output_name: str) -> None:
    """Rename the graph's one input and one output to the source model's names."""
    current_in = single_input(model).name
    current_out = single_output(model).name
    if output_name == current_in or input_name == current_out:
        raise GraphError(f"input and output names clash ({input_name!r}, {output_name!r})")
    taken = _tensor_names(model) - {current_in, current_out}
    for wanted in (input_name, output_name):
        if wanted in taken:
            # An internal tensor already has the name: move it aside first.
            rename_tensor(model, wanted, _fresh(model, f"{wanted}_inner"))
    rename_tensor(model, current_in, input_name)
    rename_tensor(model, current_out, output_name)


def ends_in_softmax(model: onnx.ModelProto) -> bool:
    output = single_output(model).name
    producers = [node for node in model.graph.node if output in node.output]
    return bool(producers) and producers[0].op_type == "Softmax"


def add_softmax(model: onnx.ModelProto) -> None:
    """Softmax over the last axis after the output; the output keeps its name."""
    if ends_in_softmax(model):
        raise GraphError("the model already ends in a Softmax; drop --softmax")
    name = single_output(model).name
    logits = _fresh(model, f"{name}_logits")
    _rename_in_nodes(model, name, logits)
    model.graph.node.append(helper.make_node("Softmax", [logits], [name], axis=-1))


def wrap_uint8_input(model: onnx.ModelProto, preprocessing: Preprocessing) -> None:
    """Take uint8 pixels under the same input name and apply ``preprocessing`` inside.

    The steps are the gateway's own (``SCALING_STEPS``), so a uint8 request gives
    the same numbers as the gateway's float tensor for the same pixels.
    """
    graph_input = single_input(model)
    element = graph_input.type.tensor_type.elem_type
    if element != TensorProto.FLOAT:
        raise GraphError(
            f"--serving-input uint8 needs a float32 input, not {TensorProto.DataType.Name(element)}"
        )
    name = graph_input.name
    inner = _fresh(model, f"{name}_float")
    _rename_in_nodes(model, name, inner)
    graph_input.type.tensor_type.elem_type = TensorProto.UINT8
    nodes = [helper.make_node("Cast", [name], [f"{inner}_cast"], to=TensorProto.FLOAT)]
    initializers = []
    current = f"{inner}_cast"
    steps = SCALING_STEPS[preprocessing]
    for index, (operation, operand) in enumerate(steps):
        constant = f"{inner}_{operation}_{index}"
        initializers.append(numpy_helper.from_array(np.asarray(operand, np.float32), constant))
        result = inner if index == len(steps) - 1 else f"{inner}_step_{index}"
        nodes.append(helper.make_node(_OPERATORS[operation], [current, constant], [result]))
        current = result
    if not steps:
        nodes[0].output[0] = inner
    model.graph.initializer.extend(initializers)
    existing = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend([*nodes, *existing])


def canonical_bytes(model: onnx.ModelProto, producer: str, version: str) -> bytes:
    """Checked, serialized bytes without time- or machine-dependent fields."""
    model.producer_name = producer
    model.producer_version = version
    model.doc_string = ""
    model.graph.doc_string = ""
    for node in model.graph.node:
        node.doc_string = ""
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def _tensor_names(model: onnx.ModelProto) -> set[str]:
    graph = model.graph
    names = {i.name for i in graph.initializer}
    names.update(i.name for i in graph.input)
    names.update(o.name for o in graph.output)
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    return names


def _fresh(model: onnx.ModelProto, base: str) -> str:
    taken = _tensor_names(model)
    candidate, counter = base, 0
    while candidate in taken:
        counter += 1
        candidate = f"{base}_{counter}"
    return candidate


def _rename_in_nodes(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
