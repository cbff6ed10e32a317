"""A client built on the independent ``tensorflow-protobuf`` copy of TF Serving's protos.

Run as a script in its own process: those modules register the same proto file
names as ``clothing.proto``, so the two cannot share a descriptor pool.

    python tfs_client.py predict HOST:PORT MODEL [SIDE]  # Predict + GetModelMetadata, JSON out
    python tfs_client.py encode                    # a serialized PredictRequest, hex out
    python tfs_client.py decode HEX                # a serialized PredictResponse, JSON out
"""

from __future__ import annotations

import json
import sys

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)


def make_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """What ``tf.make_tensor_proto(X, shape=X.shape)`` writes for a numeric array."""
    dtypes = {np.dtype("uint8"): types_pb2.DT_UINT8, np.dtype("float32"): types_pb2.DT_FLOAT}
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]
    )
    return tensor_pb2.TensorProto(
        dtype=dtypes[array.dtype], tensor_shape=shape, tensor_content=array.tobytes()
    )


def sample(side: int = 32) -> np.ndarray:
    return np.random.default_rng(11).integers(0, 256, (2, side, side, 3), dtype=np.uint8)


def predict(address: str, model: str, side: int = 32) -> dict[str, object]:
    channel = grpc.insecure_channel(address)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    request.inputs["image"].CopyFrom(make_tensor_proto(sample(side)))
    response = stub.Predict(request, timeout=20.0)
    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata_request.model_spec.name = model
    metadata_request.metadata_field.append("signature_def")
    metadata = stub.GetModelMetadata(metadata_request, timeout=20.0)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signature_map)
    signature = signature_map.signature_def["serving_default"]
    channel.close()
    return {
        "probabilities": list(response.outputs["probabilities"].float_val),
        "shape": [d.size for d in response.outputs["probabilities"].tensor_shape.dim],
        "model_spec": [
            response.model_spec.name,
            response.model_spec.version.value,
            response.model_spec.signature_name,
        ],
        "input_dtype": types_pb2.DataType.Name(signature.inputs["image"].dtype),
        "input_shape": [d.size for d in signature.inputs["image"].tensor_shape.dim],
        "method_name": signature.method_name,
    }


def encode() -> str:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "clothing-model"
    request.model_spec.version.value = 3
    request.model_spec.signature_name = "serving_default"
    request.inputs["image"].CopyFrom(make_tensor_proto(sample()))
    request.output_filter.append("probabilities")
    return str(request.SerializeToString().hex())


def decode(hex_text: str) -> dict[str, object]:
    response = predict_pb2.PredictResponse.FromString(bytes.fromhex(hex_text))
    output = response.outputs["probabilities"]
    return {
        "model_spec": [
            response.model_spec.name,
            response.model_spec.version_label,
            response.model_spec.signature_name,
        ],
        "dtype": types_pb2.DataType.Name(output.dtype),
        "shape": [d.size for d in output.tensor_shape.dim],
        "float_val": list(output.float_val),
    }


def main(argv: list[str]) -> int:
    mode = argv[1]
    if mode == "predict":
        side = int(argv[4]) if len(argv) > 4 else 32
        print(json.dumps(predict(argv[2], argv[3], side)))
    elif mode == "encode":
        print(encode())
    elif mode == "decode":
        print(json.dumps(decode(argv[2])))
    else:
        raise SystemExit(f"unknown mode {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
