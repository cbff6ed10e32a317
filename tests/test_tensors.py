"""TensorProto <-> numpy conversion: round trips, TF Serving shorthands, malformed input."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from clothing import tensors
from clothing.proto.tensorflow.core.framework import tensor_pb2, types_pb2

DTYPES = [
    "float32",
    "float64",
    "float16",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
]


@settings(max_examples=200, deadline=None)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from(DTYPES).map(np.dtype),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    ),
    use_tensor_content=st.booleans(),
)
def test_round_trip_preserves_dtype_shape_and_values(array, use_tensor_content):
    proto = tensors.from_numpy(array, use_tensor_content=use_tensor_content)
    wire = tensor_pb2.TensorProto.FromString(proto.SerializeToString())
    back = tensors.to_numpy(wire)
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_typed_fields_are_what_tf_serving_clients_read():
    proto = tensors.from_numpy(np.array([[0.25, 0.75]], np.float32), use_tensor_content=False)
    assert list(proto.float_val) == [0.25, 0.75]
    assert proto.tensor_content == b""
    assert [d.size for d in proto.tensor_shape.dim] == [1, 2]


def test_single_value_fills_the_shape():
    proto = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=tensors.shape_proto([2, 3])
    )
    proto.float_val.append(1.5)
    np.testing.assert_array_equal(tensors.to_numpy(proto), np.full((2, 3), 1.5, np.float32))


def test_scalar_without_shape():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, int64_val=[7])
    assert tensors.to_numpy(proto).shape == ()


@pytest.mark.parametrize(
    ("proto", "message"),
    [
        (tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"x"]), "unsupported dtype"),
        (tensor_pb2.TensorProto(dtype=99, float_val=[1.0]), "unsupported dtype"),  # type: ignore[arg-type]
        (
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT,
                tensor_shape=tensors.shape_proto([2]),
                tensor_content=b"abc",
            ),
            "tensor_content has 3 bytes",
        ),
        (
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT, tensor_shape=tensors.shape_proto([3]), float_val=[1, 2]
            ),
            "float_val has 2 values",
        ),
        (
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_UINT8,
                tensor_shape=tensors.shape_proto([1 << 20, 1 << 20, 1 << 20]),
                int_val=[1],
            ),
            "too large",
        ),
    ],
)
def test_malformed_tensors_raise_tensor_error(proto, message):
    with pytest.raises(tensors.TensorError, match=message):
        tensors.to_numpy(proto)


def test_negative_dimension_is_refused():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add(size=-4)
    with pytest.raises(tensors.TensorError, match="negative"):
        tensors.to_numpy(proto)


def test_unknown_rank_is_refused():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.unknown_rank = True
    with pytest.raises(tensors.TensorError, match="unknown rank"):
        tensors.to_numpy(proto)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes_never_escape_as_other_errors(data):
    """Whatever a peer sends, parsing either works or raises TensorError."""
    try:
        proto = tensor_pb2.TensorProto.FromString(data)
    except Exception:
        return
    with contextlib.suppress(tensors.TensorError):
        tensors.to_numpy(proto)


def test_from_numpy_fills_a_proto_in_place() -> None:
    from clothing.proto.tensorflow_serving.apis import predict_pb2

    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    request = predict_pb2.PredictRequest()
    filled = tensors.from_numpy(pixels, into=request.inputs["x"])
    assert filled is request.inputs["x"]
    assert request.inputs["x"].dtype == types_pb2.DT_UINT8
    np.testing.assert_array_equal(tensors.to_numpy(request.inputs["x"]), pixels)
