"""The gateway's side of TF Serving's gRPC API: metadata, status and Predict.

One ``grpc.aio`` channel per process, balanced ``round_robin`` over every
address the target resolves to (``dns:///name:port`` re-resolves as pods come
and go; a comma list becomes a static ``ipv4:``/``ipv6:`` target). Every call
has a deadline; Predict is retried twice on UNAVAILABLE after short pauses,
which with round robin lands on another backend. Reconnect backoff is kept
short so a restarted model server is picked up within seconds.

What the model wants (input name, dtype, size, preprocessing, class names) is
learned from ``GetModelMetadata``: ``model_info`` when the server offers it
(this project's server), else the signature alone (a stock TF Serving refuses
``model_info`` with INVALID_ARGUMENT, so the request is repeated without it).
Both are read by :func:`clothing.serving_layout.describe_interface`, the one
reader of the metadata schema; the gateway never reads the model's files.

Every call carries the current request's ``x-request-id`` and ``traceparent``
as metadata (:mod:`clothing.request_context`), so the model server logs it
under the same id.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
import numpy as np
from google.protobuf import json_format, struct_pb2

from clothing import request_context, tracing
from clothing.gateway.errors import (
    GatewayError,
    ModelServerError,
    ModelUnavailable,
    UpstreamTimeout,
)
from clothing.gateway.imaging import InputSpec
from clothing.preprocessing import Preprocessing
from clothing.proto.tensorflow.core.framework import types_pb2
from clothing.proto.tensorflow.core.protobuf import meta_graph_pb2
from clothing.proto.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from clothing.serving_layout import (
    GraphFacts,
    GraphTensor,
    InputDtype,
    MetadataError,
    ModelInterface,
    describe_interface,
    section,
)
from clothing.tensors import TensorError, from_numpy, to_numpy

T = TypeVar("T")
log = logging.getLogger("clothing.gateway")

_DTYPES: dict[int, InputDtype] = {types_pb2.DT_UINT8: "uint8", types_pb2.DT_FLOAT: "float32"}
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE

CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.lb_policy_name", "round_robin"),
    # Pings only while calls are open: idle pings get a client GOAWAY'd by servers.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.initial_reconnect_backoff_ms", 250),
    # At most ~1.2 s (with jitter) between reconnect attempts, so a restarted
    # model server is used again within 2 s of coming back.
    ("grpc.max_reconnect_backoff_ms", 1_000),
    # A batch of float32 299x299 images is far above gRPC's 4 MB default.
    ("grpc.max_send_message_length", 512 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


def grpc_target(setting: str) -> str:
    """Channel target for ``TF_SERVING_HOST``: ``host:port``, ``dns:///host:port`` or a comma list.

    A comma list is resolved here once; names that need re-resolution belong in
    a ``dns:///`` target (a headless Service on Kubernetes).
    """
    setting = setting.strip()
    if not setting:
        raise ValueError("TF_SERVING_HOST is empty")
    if "," not in setting:
        return setting
    addresses: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]] = []
    for entry in (e.strip() for e in setting.split(",")):
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"TF_SERVING_HOST entry {entry!r} is not host:port")
        infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if (address, int(port)) not in addresses:
                addresses.append((address, int(port)))
    if all(a.version == 4 for a, _ in addresses):
        return "ipv4:" + ",".join(f"{a}:{p}" for a, p in addresses)
    mapped = [a if a.version == 6 else ipaddress.IPv6Address(f"::ffff:{a}") for a, _ in addresses]
    return "ipv6:" + ",".join(f"[{a}]:{p}" for a, (_, p) in zip(mapped, addresses, strict=True))


@dataclass(frozen=True)
class ModelInfo:
    """One served version: its name and number, and what it takes and gives."""

    name: str
    version: int
    interface: ModelInterface

    @property
    def input(self) -> InputSpec:
        """What each image is turned into for this model."""
        model = self.interface
        return InputSpec(
            model.input_name, model.height, model.width, model.input_dtype, model.preprocessing
        )

    @property
    def output_name(self) -> str:
        return self.interface.output_name

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names the model server declared; empty when it declared none."""
        return self.interface.classes


@dataclass(frozen=True)
class PredictOutcome:
    probabilities: np.ndarray  # [batch, classes] float32
    version: int


def _map_rpc_error(error: grpc.aio.AioRpcError, what: str) -> GatewayError:
    """The public error for a failed call: its kind and gRPC code, never the details (they
    can name pod addresses and internal services); those go to the log."""
    code = error.code()
    log.warning("model server %s failed: %s: %s", what, code.name, error.details())
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return UpstreamTimeout(f"model server did not answer {what} in time")
    if code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    ):
        return ModelUnavailable(f"model server unavailable for {what} ({code.name})")
    return ModelServerError(f"model server refused {what} ({code.name})")


class ModelClient:
    """Calls one model on a TF Serving-compatible server over a shared channel."""

    def __init__(
        self,
        target: str,
        model_name: str,
        *,
        signature: str = "serving_default",
        deadline: float = 5.0,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        self.target = grpc_target(target)
        self.model_name = model_name
        self.signature = signature
        self.deadline = deadline
        self.preprocessing = preprocessing
        self._channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        self._predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(  # type: ignore[no-untyped-call]
            self._channel
        )
        self._model_stub = model_service_pb2_grpc.ModelServiceStub(  # type: ignore[no-untyped-call]
            self._channel
        )

    async def close(self) -> None:
        await self._channel.close()

    def _spec(self) -> model_pb2.ModelSpec:
        return model_pb2.ModelSpec(name=self.model_name, signature_name=self.signature)

    async def _call(self, what: str, call: Callable[[], Awaitable[T]], *, retry: bool) -> T:
        try:
            return await _with_retry(call, retry=retry)
        except grpc.aio.AioRpcError as error:
            raise _map_rpc_error(error, what) from None

    async def is_available(self) -> bool:
        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=model_pb2.ModelSpec(name=self.model_name)
        )
        try:
            response = await self._model_stub.GetModelStatus(
                request, timeout=self.deadline, metadata=request_context.outgoing_metadata()
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise _map_rpc_error(error, "GetModelStatus") from None
            # A server with PredictionService alone: the model is available when it
            # describes itself (an unknown model is NOT_FOUND, a ModelUnavailable).
            await self.metadata()
            return True
        return any(s.state == _AVAILABLE for s in response.model_version_status)

    async def metadata(self) -> ModelInfo:
        response = await self._metadata_response()
        return self._parse_metadata(response)

    async def _metadata_response(self) -> get_model_metadata_pb2.GetModelMetadataResponse:
        metadata = request_context.outgoing_metadata()

        def ask(fields: list[str]) -> Awaitable[get_model_metadata_pb2.GetModelMetadataResponse]:
            request = get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec=self._spec(), metadata_field=fields
            )
            return cast(
                Awaitable[get_model_metadata_pb2.GetModelMetadataResponse],
                self._predict_stub.GetModelMetadata(
                    request, timeout=self.deadline, metadata=metadata
                ),
            )

        try:
            return await _with_retry(lambda: ask(["signature_def", "model_info"]), retry=True)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise _map_rpc_error(error, "GetModelMetadata") from None
        return await self._call("GetModelMetadata", lambda: ask(["signature_def"]), retry=True)

    def _parse_metadata(
        self, response: get_model_metadata_pb2.GetModelMetadataResponse
    ) -> ModelInfo:
        signatures = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" not in response.metadata or not response.metadata[
            "signature_def"
        ].Unpack(signatures):
            raise ModelServerError("model server sent no signature_def metadata")
        if self.signature not in signatures.signature_def:
            names = ", ".join(sorted(signatures.signature_def)) or "none"
            raise ModelServerError(f"model has no signature {self.signature!r} (has: {names})")
        info: dict[str, Any] = {}
        if "model_info" in response.metadata:
            struct = struct_pb2.Struct()
            if response.metadata["model_info"].Unpack(struct):
                info = json_format.MessageToDict(struct)
        return self._model_info(
            signatures.signature_def[self.signature], info, int(response.model_spec.version.value)
        )

    def _model_info(
        self, signature: meta_graph_pb2.SignatureDef, info: dict[str, Any], version: int
    ) -> ModelInfo:
        if self.preprocessing is not None:  # the operator's word beats the metadata's
            declared_input = {**section(info, "input"), "preprocessing": self.preprocessing}
            info = {**info, "input": declared_input}
        try:
            interface = describe_interface(info, _graph_facts(signature))
        except MetadataError as error:
            raise ModelServerError(str(error)) from None
        return ModelInfo(self.model_name, version, interface)

    async def predict(self, batch: np.ndarray, info: ModelInfo) -> PredictOutcome:
        request = predict_pb2.PredictRequest(
            model_spec=self._spec(), output_filter=[info.output_name]
        )
        from_numpy(batch, into=request.inputs[info.input.name])
        with tracing.span("Predict"):
            metadata = request_context.outgoing_metadata(tracing.current_traceparent())
            response = await self._call(
                "Predict",
                lambda: self._predict_stub.Predict(
                    request, timeout=self.deadline, metadata=metadata
                ),
                retry=True,
            )
        if info.output_name not in response.outputs:
            raise ModelServerError(f"model server sent no output {info.output_name!r}")
        try:
            scores = to_numpy(response.outputs[info.output_name])
        except TensorError as error:
            raise ModelServerError(f"model server sent a bad tensor: {error}") from None
        if scores.ndim != 2 or scores.shape[0] != batch.shape[0]:
            raise ModelServerError(
                f"model answered shape {list(scores.shape)} for {batch.shape[0]} images"
            )
        return PredictOutcome(
            scores.astype(np.float32, copy=False), int(response.model_spec.version.value)
        )


# Pauses before each retry on UNAVAILABLE. A backend that just died can still be
# picked by round-robin until the channel notices the broken connection, so an
# immediate single retry may land on the same dead address.
RETRY_BACKOFF_SECONDS = (0.02, 0.1)


async def _with_retry(call: Callable[[], Awaitable[T]], *, retry: bool) -> T:
    """Run ``call``; on UNAVAILABLE try again (Predict and metadata are idempotent)."""
    pauses = RETRY_BACKOFF_SECONDS if retry else ()
    for pause in pauses:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            log.info("model server unavailable (%s); retrying", error.details())
        await asyncio.sleep(pause)
    return await call()


def _graph_facts(signature: meta_graph_pb2.SignatureDef) -> GraphFacts:
    """The signature's tensors as :func:`describe_interface` reads a graph."""
    return GraphFacts(
        inputs=tuple(
            GraphTensor(
                name,
                _DTYPES.get(tensor.dtype),
                tuple(dim.size for dim in tensor.tensor_shape.dim),
            )
            for name, tensor in sorted(signature.inputs.items())
        ),
        outputs=tuple(sorted(signature.outputs)),
    )
