"""TF Serving's REST API plus health, readiness and metrics, on FastAPI.

Errors are mapped to HTTP in one place: the :class:`ServingError` exception
handler. Routes use :class:`_ServingRoute`, which turns any other exception
into an INTERNAL error (logged, no details to the client) before that handler.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from clothing.model_server import rest_codec
from clothing.model_server.config import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_CONCURRENT_REST
from clothing.model_server.core import DEFAULT_SIGNATURE, Dataplane
from clothing.model_server.errors import (
    INTERNAL_MESSAGE,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    ServingError,
)
from clothing.model_server.signatures import signature_def
from clothing.proto.tensorflow_serving.apis import get_model_metadata_pb2

log = logging.getLogger(__name__)

RETRY_AFTER = {"Retry-After": "1"}


class ServerState:
    """What readiness depends on besides the models: whether we are draining."""

    def __init__(self) -> None:
        self.draining = False


class _ServingRoute(APIRoute):
    """Translate unexpected exceptions at the boundary, so one handler maps them all."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except (ServingError, StarletteHTTPException):
                raise
            except Exception as error:
                log.exception("REST %s %s failed", request.method, request.url.path)
                raise Internal(INTERNAL_MESSAGE) from error

        return guarded


def _version(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise InvalidArgument(f"version must be a non-negative integer, got {value!r}")
    return int(value)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    too_large = ResourceExhausted(f"request body over the {limit}-byte limit", http_status=413)
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _decode_predict(
    request: Request,
    dataplane: Dataplane,
    *,
    name: str,
    version: str | None,
    label: str | None,
    limit: int,
    max_rows: int,
) -> tuple[rest_codec.RestRequest, int | None, dict[str, np.ndarray]]:
    """Body, version and input arrays of a REST Predict; a refusal here is counted too."""
    signature_name = ""
    try:
        raw = await _read_body(request, limit)
        number = _version(version)
        signature = dataplane.metadata(name, version=number, label=label).signatures[
            DEFAULT_SIGNATURE
        ]
        # The structure is bounded by what the model can take before anything is decoded.
        budget = rest_codec.json_budget(signature, max_rows)
        parsed = await run_in_threadpool(rest_codec.parse_body, raw, budget)
        signature_name = parsed.signature_name
        inputs = await run_in_threadpool(rest_codec.decode_inputs, parsed, signature, max_rows)
    except ServingError as error:
        dataplane.count_refused(name, signature_name, "rest", error.code.grpc_name)
        raise
    return parsed, number, inputs


def build_app(
    dataplane: Dataplane,
    state: ServerState,
    *,
    max_message_bytes: int,
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT_REST,
    cors_origins: tuple[str, ...] = (),
    prometheus_path: str | None = None,
) -> FastAPI:
    app = FastAPI(
        title="clothing model server",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.router.route_class = _ServingRoute
    metrics = dataplane.metrics
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
        )

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, error: ServingError) -> JSONResponse:
        # Overload and not-ready answers tell clients when to come back.
        headers = RETRY_AFTER if error.http_status in (429, 503) else None
        return JSONResponse(
            {"error": error.message}, status_code=error.http_status, headers=headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    inflight = [0]

    @app.middleware("http")
    async def count_inflight(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not request.url.path.startswith("/v1/"):
            return await call_next(request)
        if inflight[0] >= max_concurrent:
            # Refused before the body is read, as grpcio does past maximum_concurrent_rpcs.
            return JSONResponse(
                {"error": f"more than {max_concurrent} REST requests at once; retry"},
                status_code=429,
                headers=RETRY_AFTER,
            )
        gauge = metrics.inflight.labels(transport="rest")
        gauge.inc()
        inflight[0] += 1
        try:
            return await call_next(request)
        finally:
            inflight[0] -= 1
            gauge.dec()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        reasons = ["server is shutting down"] if state.draining else []
        reasons += dataplane.repository.readiness()
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    if prometheus_path and prometheus_path != "/metrics":
        # Scrape configs written for TF Serving keep working.
        app.add_api_route(prometheus_path, prometheus_metrics, methods=["GET"])

    def status_body(name: str, version: str | None, label: str | None) -> dict[str, Any]:
        statuses = dataplane.status(name, version=_version(version), label=label)
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

    def metadata_body(name: str, version: str | None, label: str | None) -> dict[str, Any]:
        result = dataplane.metadata(
            name, ("signature_def", "model_info"), version=_version(version), label=label
        )
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in result.signatures.items():
            signature_map.signature_def[key].CopyFrom(signature_def(signature))
        return {
            "model_spec": {
                "name": result.model,
                "signature_name": "",
                "version": str(result.version),
            },
            "metadata": {
                "signature_def": json_format.MessageToDict(
                    signature_map, preserving_proto_field_name=True
                ),
                "model_info": result.info,
            },
        }

    async def predict(
        request: Request, name: str, version: str | None, label: str | None
    ) -> Response:
        parsed, number, inputs = await _decode_predict(
            request,
            dataplane,
            name=name,
            version=version,
            label=label,
            limit=max_message_bytes,
            max_rows=max_batch_rows,
        )
        result = await dataplane.predict(
            name,
            inputs,
            version=number,
            label=label,
            signature_name=parsed.signature_name,
            transport="rest",
        )
        body = await run_in_threadpool(
            rest_codec.encode_outputs, result.outputs, columnar=parsed.columnar
        )
        return Response(body, media_type="application/json")

    @app.get("/v1/models/{name}")
    async def model_status(name: str) -> dict[str, Any]:
        return status_body(name, None, None)

    @app.get("/v1/models/{name}/versions/{version}")
    async def version_status(name: str, version: str) -> dict[str, Any]:
        return status_body(name, version, None)

    @app.get("/v1/models/{name}/labels/{label}")
    async def label_status(name: str, label: str) -> dict[str, Any]:
        return status_body(name, None, label)

    @app.get("/v1/models/{name}/metadata")
    async def model_metadata(name: str) -> dict[str, Any]:
        return metadata_body(name, None, None)

    @app.get("/v1/models/{name}/versions/{version}/metadata")
    async def version_metadata(name: str, version: str) -> dict[str, Any]:
        return metadata_body(name, version, None)

    @app.get("/v1/models/{name}/labels/{label}/metadata")
    async def label_metadata(name: str, label: str) -> dict[str, Any]:
        return metadata_body(name, None, label)

    @app.post("/v1/models/{name}:predict")
    async def model_predict(request: Request, name: str) -> Response:
        return await predict(request, name, None, None)

    @app.post("/v1/models/{name}/versions/{version}:predict")
    async def version_predict(request: Request, name: str, version: str) -> Response:
        return await predict(request, name, version, None)

    @app.post("/v1/models/{name}/labels/{label}:predict")
    async def label_predict(request: Request, name: str, label: str) -> Response:
        return await predict(request, name, None, label)

    return app
