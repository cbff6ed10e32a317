"""TF Serving's REST JSON <-> numpy and the core's answers, in one place.

Requests come in row format (``{"instances": [...]}``) or columnar format
(``{"inputs": ...}``, a dict of named inputs or one value for a one-input
signature). Values are converted to the signature's dtypes with range checks
(a float is never silently truncated to an integer). ``{"b64": "..."}`` holds
the raw little-endian bytes of one instance (or of the whole input in columnar
format): for a uint8 image that is 4x smaller than JSON numbers, and exact.
Answers keep float32 values exact (no rounding to 6 digits).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf import json_format

from clothing.model_server.backend import Signature, TensorSpec
from clothing.model_server.config import DEFAULT_MAX_BATCH_ROWS
from clothing.model_server.core import MetadataResult, VersionStatus, check_rows
from clothing.model_server.errors import InvalidArgument
from clothing.model_server.signatures import signature_def_map

# For a signature with unknown dimensions past the batch: about 60 MB of empty lists.
UNSIZED_CONTAINERS = 1 << 20
UNSIZED_VALUES = 1 << 24


@dataclass(frozen=True)
class RestRequest:
    columnar: bool
    signature_name: str
    body: dict[str, Any]


@dataclass(frozen=True)
class JsonBudget:
    """The most lists/objects and values a body may hold before it is decoded."""

    containers: int
    values: int


def json_budget(signature: Signature, max_rows: int) -> JsonBudget:
    """What ``max_rows`` rows of ``signature``'s inputs take as nested JSON lists.

    Decoding makes a Python object of each value and each list (an empty list
    is 56 bytes: 64 MiB of ``[],`` would be 1.2 GB), so the counts are bounded by
    what a legitimate request of the largest allowed batch needs.
    """
    containers, values = 0, 0
    for spec in signature.inputs:
        row = spec.shape[1:]
        if any(d is None for d in row):
            return JsonBudget(UNSIZED_CONTAINERS, UNSIZED_VALUES)
        dims = [int(d) for d in row if d is not None]
        lists = 1
        for size in dims[:-1]:
            lists = lists * size + 1  # each level's lists, plus the row itself
        containers += lists + 1  # a named instance's object
        values += int(np.prod(dims, dtype=np.int64)) + len(dims) + 2
    slack = 64  # the body's own object, "instances" / "inputs", signature_name
    return JsonBudget(max_rows * containers + slack, max_rows * values + slack)


def check_structure(raw: bytes, budget: JsonBudget) -> None:
    """Count brackets and commas (a fast scan of the bytes) against ``budget`` before
    anything is decoded. Brackets or commas inside strings only over-count."""
    containers = raw.count(b"[") + raw.count(b"{")
    values = raw.count(b",") + containers
    if containers > budget.containers or values > budget.values:
        raise InvalidArgument(
            f"request body holds more JSON lists or values ({containers} and about "
            f"{values}) than the largest allowed batch needs ({budget.containers} and "
            f"{budget.values}); send fewer rows, or b64"
        )


def parse_body(raw: bytes, budget: JsonBudget | None = None) -> RestRequest:
    if budget is not None:
        check_structure(raw, budget)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"request body is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidArgument("request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidArgument('request body must be a JSON object with "instances" or "inputs"')
    if ("instances" in body) == ("inputs" in body):
        raise InvalidArgument('request body needs exactly one of "instances" or "inputs"')
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise InvalidArgument("signature_name must be a string")
    return RestRequest("inputs" in body, signature_name, body)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _from_b64(value: dict[str, Any], spec: TensorSpec, shape: tuple[int, ...]) -> np.ndarray:
    encoded = value["b64"]
    if not isinstance(encoded, str):
        raise InvalidArgument(f"input {spec.name}: b64 value must be a string")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"input {spec.name}: invalid base64") from None
    dtype = np.dtype(spec.dtype).newbyteorder("<")
    if len(raw) % dtype.itemsize:
        raise InvalidArgument(f"input {spec.name}: b64 length is not a multiple of {dtype}")
    array = np.frombuffer(raw, dtype=dtype).astype(spec.dtype)
    try:
        return array.reshape(shape)
    except ValueError:
        raise InvalidArgument(
            f"input {spec.name}: b64 holds {array.size} values, which do not fit shape "
            f"{[-1 if d is None else d for d in spec.shape]}"
        ) from None


def _b64_shape(spec: TensorSpec, per_row: bool) -> tuple[int, ...]:
    """One row's shape, or the whole input's with the batch left to infer."""
    row = spec.shape[1:]
    if any(d is None for d in row):
        raise InvalidArgument(f"input {spec.name}: b64 needs a signature with fixed dimensions")
    fixed = tuple(int(d) for d in row if d is not None)
    return fixed if per_row else (-1, *fixed)


def to_array(value: Any, spec: TensorSpec, *, per_row: bool) -> np.ndarray:
    """A JSON value as an array of the signature's dtype, or InvalidArgument."""
    if _is_b64(value):
        return _from_b64(value, spec, _b64_shape(spec, per_row))
    try:
        array = np.asarray(value)
    except ValueError:
        raise InvalidArgument(f"input {spec.name}: lists of uneven length") from None
    target = np.dtype(spec.dtype)
    if array.dtype == object or array.dtype.kind in "USV":
        raise InvalidArgument(f"input {spec.name}: expected numbers of type {spec.dtype}")
    if array.size == 0:
        return array.astype(target)
    if target.kind in "iu":
        if array.dtype.kind == "f":
            raise InvalidArgument(f"input {spec.name}: expected integers for {spec.dtype}")
        limits = np.iinfo(target)
        if int(array.min()) < limits.min or int(array.max()) > limits.max:
            raise InvalidArgument(f"input {spec.name}: a value is out of range for {spec.dtype}")
    elif target.kind == "b" and array.dtype.kind != "b":
        raise InvalidArgument(f"input {spec.name}: expected true/false values")
    return array.astype(target)


def decode_inputs(
    request: RestRequest, signature: Signature, max_rows: int = DEFAULT_MAX_BATCH_ROWS
) -> dict[str, np.ndarray]:
    inputs = _decode_inputs(request, signature, max_rows)
    for name, array in inputs.items():
        if array.ndim:
            check_rows(name, array.shape[0], max_rows)
    return inputs


def _decode_inputs(
    request: RestRequest, signature: Signature, max_rows: int
) -> dict[str, np.ndarray]:
    specs = {spec.name: spec for spec in signature.inputs}
    if request.columnar:
        inputs = request.body["inputs"]
        if not isinstance(inputs, dict) or _is_b64(inputs):
            if len(specs) != 1:
                raise InvalidArgument(
                    f'"inputs" must name each of: {", ".join(specs)}; '
                    f"expected signature: {signature.describe()}"
                )
            inputs = {next(iter(specs)): inputs}
        return {
            name: to_array(value, _spec(specs, name, signature), per_row=False)
            for name, value in inputs.items()
        }
    instances = request.body["instances"]
    if not isinstance(instances, list) or not instances:
        raise InvalidArgument('"instances" must be a non-empty list')
    check_rows(", ".join(specs), len(instances), max_rows)
    named = all(isinstance(row, dict) and not _is_b64(row) for row in instances)
    if not named:
        if len(specs) != 1:
            raise InvalidArgument(
                f"each instance must be an object naming: {', '.join(specs)}; "
                f"expected signature: {signature.describe()}"
            )
        spec = next(iter(specs.values()))
        rows = [to_array(row, spec, per_row=True) for row in instances]
        return {spec.name: _stack(rows, spec)}
    names = set(instances[0])
    if any(set(row) != names for row in instances):
        raise InvalidArgument("every instance must name the same inputs")
    return {
        name: _stack(
            [to_array(row[name], _spec(specs, name, signature), per_row=True) for row in instances],
            _spec(specs, name, signature),
        )
        for name in names
    }


def _spec(specs: dict[str, TensorSpec], name: str, signature: Signature) -> TensorSpec:
    try:
        return specs[name]
    except KeyError:
        raise InvalidArgument(
            f"unknown input {name}; expected signature: {signature.describe()}"
        ) from None


def _stack(rows: list[np.ndarray], spec: TensorSpec) -> np.ndarray:
    try:
        return np.stack(rows)
    except ValueError:
        raise InvalidArgument(f"input {spec.name}: instances have different shapes") from None


def encode_outputs(outputs: dict[str, np.ndarray], *, columnar: bool) -> bytes:
    if columnar:
        if len(outputs) == 1:
            body: dict[str, Any] = {"outputs": next(iter(outputs.values())).tolist()}
        else:
            body = {"outputs": {name: array.tolist() for name, array in outputs.items()}}
    elif len(outputs) == 1:
        body = {"predictions": next(iter(outputs.values())).tolist()}
    else:
        lists = {name: array.tolist() for name, array in outputs.items()}
        rows = len(next(iter(lists.values())))
        body = {"predictions": [{name: lists[name][i] for name in lists} for i in range(rows)]}
    return json.dumps(body, separators=(",", ":")).encode()


def status_json(statuses: Sequence[VersionStatus]) -> dict[str, Any]:
    """GetModelStatus's answer as TF Serving's REST API writes it."""
    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": s.state,
                "status": {"error_code": s.error_code, "error_message": s.error_message},
            }
            for s in statuses
        ]
    }


def metadata_json(result: MetadataResult) -> dict[str, Any]:
    """GetModelMetadata's answer as TF Serving's REST API writes it."""
    signatures = signature_def_map(result.signatures)
    return {
        "model_spec": {"name": result.model, "signature_name": "", "version": str(result.version)},
        "metadata": {
            "signature_def": json_format.MessageToDict(
                signatures, preserving_proto_field_name=True
            ),
            "model_info": result.info,
        },
    }
