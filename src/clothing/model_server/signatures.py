"""A served model's signature as TF Serving's ``SignatureDef``, for both transports.

GetModelMetadata answers with it over gRPC, and the REST metadata route with its JSON
form, so neither transport imports the other.
"""

from __future__ import annotations

from clothing import tensors
from clothing.model_server.backend import Signature
from clothing.proto.tensorflow.core.protobuf import meta_graph_pb2


def signature_def(signature: Signature) -> meta_graph_pb2.SignatureDef:
    proto = meta_graph_pb2.SignatureDef(method_name=signature.method_name)
    for target, specs in ((proto.inputs, signature.inputs), (proto.outputs, signature.outputs)):
        for spec in specs:
            target[spec.name].CopyFrom(
                meta_graph_pb2.TensorInfo(
                    name=spec.name,
                    dtype=tensors.datatype_of(spec.dtype),  # type: ignore[arg-type]
                    tensor_shape=tensors.shape_proto(spec.shape),
                )
            )
    return proto
