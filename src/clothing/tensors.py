"""Conversion between ``tensorflow.TensorProto`` and numpy, in one place.

Both tiers use it: the model server to read requests and write responses, the
gateway to build requests and read responses. Reading accepts the raw
``tensor_content`` bytes (what ``tf.make_tensor_proto`` writes) and every typed
``*_val`` field, including TF Serving's shorthand of one value repeated to fill
the shape. Writing uses ``tensor_content`` by default (fast for large tensors)
or the typed fields (what TF Serving itself answers, so
``response.outputs[name].float_val`` works in existing clients).

Every malformed tensor raises :class:`TensorError` with a message fit for a
client: the caller maps it to INVALID_ARGUMENT / 400.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clothing.proto.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

# The largest tensor any request may describe, in elements. Far above any
# image batch, it keeps a forged shape from asking for terabytes.
MAX_ELEMENTS = 1 << 31


class TensorError(ValueError):
    """A tensor proto that cannot be turned into an array (or the reverse)."""


@dataclass(frozen=True)
class _DType:
    numpy: np.dtype[np.generic]
    field: str  # the typed repeated field that holds values of this dtype


_DTYPES: dict[int, _DType] = {
    types_pb2.DT_FLOAT: _DType(np.dtype("<f4"), "float_val"),
    types_pb2.DT_DOUBLE: _DType(np.dtype("<f8"), "double_val"),
    types_pb2.DT_HALF: _DType(np.dtype("<f2"), "half_val"),
    types_pb2.DT_INT8: _DType(np.dtype("i1"), "int_val"),
    types_pb2.DT_INT16: _DType(np.dtype("<i2"), "int_val"),
    types_pb2.DT_INT32: _DType(np.dtype("<i4"), "int_val"),
    types_pb2.DT_INT64: _DType(np.dtype("<i8"), "int64_val"),
    types_pb2.DT_UINT8: _DType(np.dtype("u1"), "int_val"),
    types_pb2.DT_UINT16: _DType(np.dtype("<u2"), "int_val"),
    types_pb2.DT_UINT32: _DType(np.dtype("<u4"), "uint32_val"),
    types_pb2.DT_UINT64: _DType(np.dtype("<u8"), "uint64_val"),
    types_pb2.DT_BOOL: _DType(np.dtype("?"), "bool_val"),
}
_NAMES_BY_NUMPY = {
    "float32": types_pb2.DT_FLOAT,
    "float64": types_pb2.DT_DOUBLE,
    "float16": types_pb2.DT_HALF,
    "int8": types_pb2.DT_INT8,
    "int16": types_pb2.DT_INT16,
    "int32": types_pb2.DT_INT32,
    "int64": types_pb2.DT_INT64,
    "uint8": types_pb2.DT_UINT8,
    "uint16": types_pb2.DT_UINT16,
    "uint32": types_pb2.DT_UINT32,
    "uint64": types_pb2.DT_UINT64,
    "bool": types_pb2.DT_BOOL,
}


def dtype_name(code: int) -> str:
    """The TensorFlow name of a DataType code, e.g. ``DT_FLOAT``."""
    try:
        return types_pb2.DataType.Name(code)
    except ValueError:
        return f"DT_UNKNOWN({code})"


def numpy_dtype(code: int) -> np.dtype[np.generic]:
    """The numpy dtype for a DataType code, or :class:`TensorError`."""
    try:
        return _DTYPES[code].numpy
    except KeyError:
        raise TensorError(f"unsupported dtype {dtype_name(code)}") from None


def datatype_of(dtype: np.dtype[np.generic] | str) -> int:
    """The DataType code for a numpy dtype (or its name)."""
    name = np.dtype(dtype).name
    try:
        return _NAMES_BY_NUMPY[name]
    except KeyError:
        raise TensorError(f"numpy dtype {name} has no TensorProto equivalent") from None


def shape_of(proto: tensor_shape_pb2.TensorShapeProto) -> tuple[int, ...]:
    """The dimensions of a shape proto; unknown rank or negative sizes are errors."""
    if proto.unknown_rank:
        raise TensorError("tensor shape has unknown rank")
    dims = tuple(int(d.size) for d in proto.dim)
    if any(d < 0 for d in dims):
        raise TensorError(f"tensor shape {list(dims)} has a negative dimension")
    return dims


def shape_proto(dims: Sequence[int | None]) -> tensor_shape_pb2.TensorShapeProto:
    """A shape proto; ``None`` or negative dimensions become -1 (unknown)."""
    proto = tensor_shape_pb2.TensorShapeProto()
    for d in dims:
        proto.dim.add(size=-1 if d is None or d < 0 else int(d))
    return proto


def to_numpy(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode a TensorProto into a numpy array of its declared dtype and shape."""
    dtype = numpy_dtype(proto.dtype)
    dims = shape_of(proto.tensor_shape)
    count = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if count > MAX_ELEMENTS or any(d > MAX_ELEMENTS for d in dims):
        raise TensorError(f"tensor shape {list(dims)} is too large")
    if proto.tensor_content:
        expected = count * dtype.itemsize
        if len(proto.tensor_content) != expected:
            raise TensorError(
                f"tensor_content has {len(proto.tensor_content)} bytes, "
                f"shape {list(dims)} of {dtype_name(proto.dtype)} needs {expected}"
            )
        array = np.frombuffer(proto.tensor_content, dtype=dtype)
        return array.reshape(dims).astype(dtype.newbyteorder("="), copy=False)
    return _from_typed_values(proto, dtype, dims, count)


def _from_typed_values(
    proto: tensor_pb2.TensorProto, dtype: np.dtype[np.generic], dims: tuple[int, ...], count: int
) -> np.ndarray:
    spec = _DTYPES[proto.dtype]
    values = getattr(proto, spec.field)
    native = dtype.newbyteorder("=")
    if proto.dtype == types_pb2.DT_HALF:
        raw = np.asarray(values, dtype=np.uint16).view(np.float16)
    else:
        if spec.field == "int_val" and len(values):
            _check_int_range(values, native, proto.dtype)
        try:
            raw = np.asarray(values, dtype=native)
        except OverflowError:
            raise TensorError(f"a value does not fit {dtype_name(proto.dtype)}") from None
    if raw.size == count:
        return raw.reshape(dims)
    if raw.size == 1 and count > 0:
        # TF Serving's shorthand: one value fills the whole tensor.
        return np.full(dims, raw[0], dtype=native)
    if raw.size == 0 and count == 0:
        return np.empty(dims, dtype=native)
    raise TensorError(f"{spec.field} has {raw.size} values, shape {list(dims)} needs {count}")


def _check_int_range(values: Sequence[int], dtype: np.dtype[np.generic], proto_dtype: int) -> None:
    """``int_val`` holds int32s for every narrower type; numpy would wrap 300 to 44 in a uint8."""
    limits = np.iinfo(dtype)  # type: ignore[type-var]
    wide = np.asarray(values, dtype=np.int64)
    if wide.min() < limits.min or wide.max() > limits.max:
        raise TensorError(
            f"a value does not fit {dtype_name(proto_dtype)} (range {limits.min}..{limits.max})"
        )


def from_numpy(
    array: np.ndarray,
    *,
    use_tensor_content: bool = True,
    into: tensor_pb2.TensorProto | None = None,
) -> tensor_pb2.TensorProto:
    """Encode an array; raw bytes by default, typed ``*_val`` fields otherwise.

    ``into`` fills an empty proto already in place (a request's ``inputs[name]``), which
    saves copying the whole tensor once more with ``CopyFrom``.
    """
    array = np.asarray(array)
    code = datatype_of(array.dtype)
    proto = tensor_pb2.TensorProto() if into is None else into
    proto.dtype = code  # type: ignore[assignment]
    proto.tensor_shape.CopyFrom(shape_proto(array.shape))
    if use_tensor_content:
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        proto.tensor_content = np.ascontiguousarray(little).tobytes()
        return proto
    flat = array.reshape(-1)
    if code == types_pb2.DT_HALF:
        proto.half_val.extend(flat.view(np.uint16).tolist())
    else:
        getattr(proto, _DTYPES[code].field).extend(flat.tolist())
    return proto
