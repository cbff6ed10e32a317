"""A served model's signatures as TF Serving's ``SignatureDefMap``, for both transports.

GetModelMetadata answers with it over gRPC, and the REST metadata route with its JSON
form, so neither transport imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping

from clothing import tensors
from clothing.model_server.backend import Signature
from clothing.proto.tensorflow.core.protobuf import meta_graph_pb2
from clothing.proto.tensorflow_serving.apis import get_model_metadata_pb2


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


def signature_def_map(
    signatures: Mapping[str, Signature],
) -> get_model_metadata_pb2.SignatureDefMap:
    proto = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in signatures.items():
        proto.signature_def[name].CopyFrom(signature_def(signature))
    return proto
