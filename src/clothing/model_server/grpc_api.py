"""TF Serving's gRPC services (``PredictionService``, ``ModelService``) on the core.

Each method converts the request, calls :class:`~clothing.model_server.core.Dataplane`
and converts back. Errors are mapped to gRPC status codes in one place, the
:func:`_grpc_errors` decorator; unknown exceptions become INTERNAL without
details. An interceptor, :class:`_ObserveCalls`, counts the requests in flight (as
the REST side does in a middleware), takes the caller's request id and trace
context from the ``x-request-id`` and ``traceparent`` metadata, and logs one
access line per call.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf import any_pb2, json_format, struct_pb2
from google.protobuf.message import DecodeError

from clothing import tensors, tracing
from clothing.logs import log_access
from clothing.model_server.backend import Signature
from clothing.model_server.config import DEFAULT_MAX_BATCH_ROWS, ModelConfig
from clothing.model_server.core import (
    METADATA_FIELDS,
    Dataplane,
    MetadataResult,
    PredictResult,
    PredictTarget,
    VersionStatus,
    check_rows,
)
from clothing.model_server.errors import (
    INTERNAL_MESSAGE,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    ServingError,
    Unavailable,
)
from clothing.model_server.metrics import ServerMetrics
from clothing.model_server.signatures import signature_def_map
from clothing.model_server.tf_serving_config import models_from_proto
from clothing.proto.tensorflow.core.protobuf import error_codes_pb2
from clothing.proto.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from clothing.proto.tensorflow_serving.util import status_pb2
from clothing.request_context import CURRENT, RequestRecord

log = logging.getLogger(__name__)
access_log = logging.getLogger("clothing.model_server.access")

# A GetModelMetadata may name each supported field; a few repeats are tolerated.
MAX_METADATA_FIELDS = 16

Servicer = TypeVar("Servicer")
Handler = Callable[[Servicer, Any, grpc.aio.ServicerContext], Awaitable[Any]]


def _grpc_errors(method: Handler[Servicer]) -> Handler[Servicer]:
    """The one place where errors become gRPC status codes."""

    @functools.wraps(method)
    async def wrapper(self: Servicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if isinstance(request, Undecodable):
                raise InvalidArgument(request.message)
            return await method(self, request, context)
        except ServingError as error:
            await context.abort(grpc.StatusCode[error.code.grpc_name], error.message)
        except tensors.TensorError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except Exception:
            log.exception("gRPC %s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)

    return wrapper


class Undecodable:
    """Stands in for a request whose bytes are not the expected protobuf message."""

    def __init__(self, message: str) -> None:
        self.message = message


def _tolerant(deserializer: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return Undecodable(f"{method}: the request bytes are not a valid protobuf message")

    return parse


class _HandlerInterceptor(grpc.aio.ServerInterceptor):
    """Rewrites the handler grpcio found for each call; subclasses say how."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        return self.rewrite(handler, str(details.method).rsplit("/", 1)[-1])

    def rewrite(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        raise NotImplementedError


class _DecodeErrorsAsInvalidArgument(_HandlerInterceptor):
    """grpcio answers UNKNOWN (naming a Python class) when a request does not parse;
    this hands the method a marker instead, so it answers INVALID_ARGUMENT."""

    def rewrite(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.request_deserializer is None:
            return handler
        tolerant = _tolerant(handler.request_deserializer, method)
        return handler._replace(request_deserializer=tolerant)


# Readiness checks arrive every few seconds per gateway: their lines are debug.
QUIET_METHODS = frozenset({"GetModelStatus"})


class _ObserveCalls(_HandlerInterceptor):
    """Counts every RPC in ``model_server_inflight_requests`` while its method runs, under
    the caller's request id, and logs its access line."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._gauge = metrics.inflight.labels(transport="grpc")

    def rewrite(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None:
            return handler
        run = handler.unary_unary
        level = logging.DEBUG if method in QUIET_METHODS else logging.INFO

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            record = RequestRecord.from_headers(context.invocation_metadata() or ())
            token = CURRENT.set(record)
            started = time.perf_counter()
            try:
                with self._gauge.track_inprogress(), tracing.request_span(f"gRPC {method}", record):
                    return await run(request, context)
            finally:
                CURRENT.reset(token)
                if access_log.isEnabledFor(level):
                    _log_call(level, method, context, record, time.perf_counter() - started)

        return handler._replace(unary_unary=observed)


def _log_call(
    level: int,
    method: str,
    context: grpc.aio.ServicerContext,
    record: RequestRecord,
    seconds: float,
) -> None:
    code = context.code()
    status = code.name if isinstance(code, grpc.StatusCode) else "OK"
    fields = {
        **record.identity(),
        "transport": "grpc",
        "route": method,
        "status": status,
        "latency_ms": round(seconds * 1000.0, 3),
        "client": context.peer(),
        **record.fields,
    }
    log_access(access_log, f"gRPC {method} {status}", fields, level)


def spec_choice(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    """The (version, label) a ModelSpec names, either or neither."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return int(spec.version.value), None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def metadata_response(result: MetadataResult) -> get_model_metadata_pb2.GetModelMetadataResponse:
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = result.model
    response.model_spec.version.value = result.version
    for field in result.fields:
        packed = any_pb2.Any()
        if field == "signature_def":
            packed.Pack(signature_def_map(result.signatures))
        else:
            info = struct_pb2.Struct()
            json_format.ParseDict(result.info, info)
            packed.Pack(info)
        response.metadata[field].CopyFrom(packed)
    return response


def declared_bytes(proto: Any) -> int:
    """How many bytes a tensor proto's dtype and shape ask for once decoded.

    TF Serving's one-value shorthand fills the whole shape, so a 25-byte message
    may declare gigabytes: this is checked before anything is allocated.
    """
    count = 1
    for dim in proto.tensor_shape.dim:
        count *= max(int(dim.size), 0)
    return count * tensors.numpy_dtype(proto.dtype).itemsize


def check_declared(
    request: predict_pb2.PredictRequest, *, max_request_bytes: int | None, max_rows: int
) -> int:
    """The bytes the request's inputs declare, all together; refused over the limits.

    Read from the declared shapes alone, before anything is decoded or expanded,
    so a small message naming many large inputs costs nothing.
    """
    total = 0
    for name, proto in request.inputs.items():
        try:
            if proto.tensor_shape.dim:
                check_rows(name, int(proto.tensor_shape.dim[0].size), max_rows)
            total += declared_bytes(proto)
        except tensors.TensorError as error:
            raise InvalidArgument(f"input {name}: {error}") from None
        if max_request_bytes is not None and total > max_request_bytes:
            raise InvalidArgument(
                f"the inputs need {total} bytes up to input {name} (shape "
                f"{[int(d.size) for d in proto.tensor_shape.dim]}), over the "
                f"{max_request_bytes}-byte limit of one request"
            )
    return total


def decode_inputs(
    request: predict_pb2.PredictRequest, signature: Signature
) -> dict[str, np.ndarray]:
    """The request's tensors as arrays, once every name is one the signature has."""
    unknown = sorted(set(request.inputs) - {spec.name for spec in signature.inputs})
    if unknown:
        shown = ", ".join(unknown[:8]) + (", ..." if len(unknown) > 8 else "")
        raise InvalidArgument(
            f"unknown input(s) {shown}; expected signature: {signature.describe()}"
        )
    inputs: dict[str, np.ndarray] = {}
    for name, proto in request.inputs.items():
        try:
            inputs[name] = tensors.to_numpy(proto)
        except tensors.TensorError as error:
            raise InvalidArgument(f"input {name}: {error}") from None
    return inputs


class AdmittedBytes:
    """Bytes the Predicts being served declared, all together: one past ``limit`` is
    refused (RESOURCE_EXHAUSTED) instead of decoded, so concurrent requests cannot add
    up to more than the process may hold."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> None:
        if self.limit is not None and self.held + size > self.limit:
            raise ResourceExhausted(
                f"the Predicts in progress hold {self.held} bytes of inputs; "
                f"{size} more would pass the {self.limit}-byte limit; retry"
            )
        self.held += size

    def give_back(self, size: int) -> None:
        self.held -= size


class _GrpcPredict:
    """A gRPC ``PredictRequest`` as :meth:`Dataplane.predict` decodes it (an
    :class:`~clothing.model_server.core.IncomingPredict`)."""

    def __init__(
        self,
        request: predict_pb2.PredictRequest,
        *,
        max_request_bytes: int | None,
        max_rows: int,
        admitted: AdmittedBytes,
    ) -> None:
        self._request = request
        self._max_request_bytes = max_request_bytes
        self._max_rows = max_rows
        self._admitted = admitted
        self.held = 0  # what this request took from ``admitted``; given back by the servicer
        self.signature_name = request.model_spec.signature_name

    async def receive(self) -> PredictTarget:
        declared = check_declared(
            self._request, max_request_bytes=self._max_request_bytes, max_rows=self._max_rows
        )
        self._admitted.take(declared)
        self.held = declared
        version, label = spec_choice(self._request.model_spec)
        return PredictTarget(version, label, tuple(self._request.output_filter))

    async def decode(self, signature: Signature) -> dict[str, np.ndarray]:
        # Tensor protos carry their own dtype and shape; the core checks them against
        # the signature once decoded (their sizes were checked on arrival).
        return decode_inputs(self._request, signature)


def predict_response(
    result: PredictResult, *, use_tensor_content: bool
) -> predict_pb2.PredictResponse:
    response = predict_pb2.PredictResponse()
    response.model_spec.name = result.model
    response.model_spec.version.value = result.version
    response.model_spec.signature_name = result.signature_name
    for name, array in result.outputs.items():
        response.outputs[name].CopyFrom(
            tensors.from_numpy(array, use_tensor_content=use_tensor_content)
        )
    return response


def status_response(
    statuses: Sequence[VersionStatus],
) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        response.model_version_status.add(
            version=status.version,
            state=get_model_status_pb2.ModelVersionStatus.State.Value(status.state),
            status=status_pb2.StatusProto(
                error_code=error_codes_pb2.Code.Value(status.error_code),
                error_message=status.error_message,
            ),
        )
    return response


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(
        self,
        dataplane: Dataplane,
        *,
        response_tensor_content: bool = False,
        max_tensor_bytes: int | None = None,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        max_admitted_bytes: int | None = None,
    ) -> None:
        self.dataplane = dataplane
        self.response_tensor_content = response_tensor_content
        self.max_tensor_bytes = max_tensor_bytes  # one request's inputs, all together
        self.max_batch_rows = max_batch_rows
        self.admitted = AdmittedBytes(max_admitted_bytes)

    @_grpc_errors
    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        call = _GrpcPredict(
            request,
            max_request_bytes=self.max_tensor_bytes,
            max_rows=self.max_batch_rows,
            admitted=self.admitted,
        )
        try:
            result = await self.dataplane.predict(request.model_spec.name, call, transport="grpc")
            return predict_response(result, use_tensor_content=self.response_tensor_content)
        finally:
            self.admitted.give_back(call.held)

    @_grpc_errors
    async def GetModelMetadata(
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if len(request.metadata_field) > MAX_METADATA_FIELDS:
            raise InvalidArgument(
                f"{len(request.metadata_field)} metadata fields asked for; at most "
                f"{MAX_METADATA_FIELDS} (the supported ones are {', '.join(METADATA_FIELDS)})"
            )
        version, label = spec_choice(request.model_spec)
        fields = list(dict.fromkeys(request.metadata_field))  # each packed once
        result = self.dataplane.metadata(
            request.model_spec.name, fields, version=version, label=label
        )
        return metadata_response(result)


Reload = Callable[[tuple[ModelConfig, ...]], Awaitable[list[str]]]


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, dataplane: Dataplane, *, reload: Reload | None) -> None:
        self.dataplane = dataplane
        self.reload = reload

    @_grpc_errors
    async def HandleReloadConfigRequest(
        self,
        request: model_management_pb2.ReloadConfigRequest,
        context: grpc.aio.ServicerContext,
    ) -> model_management_pb2.ReloadConfigResponse:
        """Serve exactly the request's models from now on (see Repository.reconfigure).

        As in TF Serving, a model that then has no available version fails the call.
        """
        if self.reload is None:
            raise PermissionDenied(
                "HandleReloadConfigRequest is turned off (--allow_config_reload_rpc=false)"
            )
        problems = await self.reload(models_from_proto(request.config))
        if problems:
            raise Unavailable("; ".join(problems))
        return model_management_pb2.ReloadConfigResponse()

    @_grpc_errors
    async def GetModelStatus(
        self,
        request: get_model_status_pb2.GetModelStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_status_pb2.GetModelStatusResponse:
        version, label = spec_choice(request.model_spec)
        statuses = self.dataplane.status(request.model_spec.name, version=version, label=label)
        return status_response(statuses)


def build_server(
    dataplane: Dataplane,
    *,
    response_tensor_content: bool,
    max_message_bytes: int,
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
    max_concurrent_rpcs: int | None = None,
    max_admitted_bytes: int | None = None,
    channel_arguments: tuple[tuple[str, int | str], ...] = (),
    reload: Reload | None = None,
) -> grpc.aio.Server:
    """A grpc.aio server with both services; the caller adds ports and starts it."""
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
        *channel_arguments,
    ]
    server = grpc.aio.server(
        options=options,
        interceptors=[_ObserveCalls(dataplane.metrics), _DecodeErrorsAsInvalidArgument()],
        # Past it grpcio answers RESOURCE_EXHAUSTED without running the handler.
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(  # type: ignore[no-untyped-call]
        PredictionServicer(
            dataplane,
            response_tensor_content=response_tensor_content,
            # A request's decoded inputs may be as large as a message may be, not larger.
            max_tensor_bytes=max_message_bytes,
            max_batch_rows=max_batch_rows,
            max_admitted_bytes=max_admitted_bytes,
        ),
        server,
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(  # type: ignore[no-untyped-call]
        ModelServicer(dataplane, reload=reload),
        server,
    )
    return server
