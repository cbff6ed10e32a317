"""Fuzz the model server's tensor intake: bytes -> TensorProto -> checks -> numpy.

    python fuzz/fuzz_tensors.py -max_total_time=60      # make fuzz

Any exception other than a TensorError (a clean INVALID_ARGUMENT) or a
protobuf DecodeError (refused by gRPC before us) is a crash worth keeping.
The byte limit mirrors the server's: a forged shape must be refused, not allocated.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from google.protobuf.message import DecodeError

    from clothing import tensors
    from clothing.model_server.grpc_api import check_typed_range, declared_bytes
    from clothing.proto.tensorflow.core.framework import tensor_pb2

MAX_TENSOR_BYTES = 64 * 1024 * 1024


def test_one_input(data: bytes) -> None:
    try:
        proto = tensor_pb2.TensorProto.FromString(data)
    except DecodeError:
        return
    try:
        if declared_bytes(proto) > MAX_TENSOR_BYTES:
            return
        check_typed_range(proto)
        array = tensors.to_numpy(proto)
    except tensors.TensorError:
        return
    dims = tuple(int(d.size) for d in proto.tensor_shape.dim)
    if array.shape != dims:
        raise AssertionError(f"decoded shape {array.shape} != declared {dims}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
