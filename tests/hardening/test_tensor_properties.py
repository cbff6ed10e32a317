"""Property tests of the model server's tensor intake (what every gRPC input goes through).

tests/test_tensors.py covers round trips and arbitrary bytes for
``clothing.tensors``; these cover what the server relies on: a typed value
never changes on the way in (numpy would wrap 300 to 44 in a uint8), and a
declared size over the limit is refused before any allocation.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clothing import tensors
from clothing.model_server.grpc_api import declared_bytes
from clothing.proto.tensorflow.core.framework import tensor_pb2, types_pb2

INT_VAL_DTYPES: dict[int, type[np.integer]] = {
    types_pb2.DT_INT8: np.int8,
    types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_INT16: np.int16,
    types_pb2.DT_UINT16: np.uint16,
    types_pb2.DT_INT32: np.int32,
}


@settings(max_examples=300, deadline=None)
@given(
    dtype=st.sampled_from(sorted(INT_VAL_DTYPES)),
    values=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=16),
)
def test_typed_values_arrive_exactly_or_are_refused(dtype: int, values: list[int]) -> None:
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensors.shape_proto([len(values)]))  # type: ignore[arg-type]
    proto.int_val.extend(values)
    limits = np.iinfo(INT_VAL_DTYPES[dtype])
    if all(limits.min <= v <= limits.max for v in values):
        assert tensors.to_numpy(proto).tolist() == values
    else:
        with pytest.raises(tensors.TensorError, match="does not fit"):
            tensors.to_numpy(proto)


@settings(max_examples=300, deadline=None)
@given(
    dims=st.lists(st.integers(0, 2**40), min_size=0, max_size=5),
    dtype=st.sampled_from([types_pb2.DT_UINT8, types_pb2.DT_FLOAT, types_pb2.DT_INT64]),
)
def test_declared_bytes_is_exact_and_never_overflows(dims: list[int], dtype: int) -> None:
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensors.shape_proto(dims))  # type: ignore[arg-type]
    expected = int(np.prod([int(d) for d in dims], dtype=object)) if dims else 1
    assert declared_bytes(proto) == expected * tensors.numpy_dtype(dtype).itemsize
