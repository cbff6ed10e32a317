"""TF Serving's REST API plus health, readiness and metrics, on FastAPI.

Errors are mapped to HTTP in one place: the :class:`ServingError` exception
handler. Routes use :class:`_ServingRoute`, which turns any other exception
into an INTERNAL error (logged, no details to the client) before that handler.

:func:`build_app` assembles named pieces: the access log (:class:`_AccessLog`:
the request id, returned in ``X-Request-ID``, and one line per request), the
error handlers, the in-flight limit (:class:`_InFlightLimit`), the probes, the
metrics and :class:`_ModelRoutes`, whose methods each convert the request,
call the core and convert its answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clothing import tracing
from clothing.logs import log_access
from clothing.model_server import rest_codec
from clothing.model_server.backend import Signature
from clothing.model_server.config import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_CONCURRENT_REST
from clothing.model_server.core import Dataplane, PredictTarget
from clothing.model_server.errors import (
    INTERNAL_MESSAGE,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    ServingError,
)
from clothing.model_server.metrics import ServerMetrics
from clothing.request_context import CURRENT, REQUEST_ID_HEADER, RequestRecord, note

log = logging.getLogger(__name__)
access_log = logging.getLogger("clothing.model_server.access")

RETRY_AFTER = {"Retry-After": "1"}
# Seconds a Predict's whole body may take to arrive.
DEFAULT_REST_BODY_TIMEOUT = 10.0
# How a /v1/models URL names the version: not at all (the newest), by number or by label.
VERSION_CHOICES = ("", "/versions/{version}", "/labels/{label}")


class ServerState:
    """What readiness depends on besides the models: the gRPC port and draining."""

    def __init__(self) -> None:
        # The gRPC port opens once the initial models are loaded (server.start).
        self.grpc_open = False
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


async def _serving_error(request: Request, error: ServingError) -> JSONResponse:
    # Overload and not-ready answers tell clients when to come back.
    headers = RETRY_AFTER if error.http_status in (429, 503) else None
    return JSONResponse({"error": error.message}, status_code=error.http_status, headers=headers)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)


def _add_error_handlers(app: FastAPI) -> None:
    app.exception_handler(ServingError)(_serving_error)
    app.exception_handler(StarletteHTTPException)(_http_error)


class _InFlightLimit:
    """Counts the TF Serving API requests being served and refuses those past ``limit``
    before their body is read, as grpcio does past maximum_concurrent_rpcs."""

    def __init__(self, metrics: ServerMetrics, limit: int) -> None:
        self._gauge = metrics.inflight.labels(transport="rest")
        self._refused = metrics.refusals.labels(transport="rest", reason="inflight_limit")
        metrics.inflight_limit.labels(transport="rest").set(limit)
        self._limit = limit
        self._count = 0

    async def __call__(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not request.url.path.startswith("/v1/"):
            return await call_next(request)
        if self._count >= self._limit:
            self._refused.inc()
            note(code="inflight_limit")
            return JSONResponse(
                {"error": f"more than {self._limit} REST requests at once; retry"},
                status_code=429,
                headers=RETRY_AFTER,
            )
        self._count += 1
        try:
            with self._gauge.track_inprogress():
                return await call_next(request)
        finally:
            self._count -= 1


class _AccessLog:
    """Each request under its id (``X-Request-ID`` when well-formed, else a new one) and
    trace context, answered with that id, and logged once answered: probes and scrapes
    (``quiet`` paths) at debug level."""

    def __init__(self, app: ASGIApp, quiet: frozenset[str]) -> None:
        self.app = app
        self.quiet = quiet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord.from_asgi(scope["headers"])
        token = CURRENT.set(record)
        started = time.perf_counter()
        header = (REQUEST_ID_HEADER.encode(), record.request_id.encode())
        answered = [500]

        async def identified(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        try:
            with tracing.request_span(f"HTTP {scope.get('method', '')}", record):
                await self.app(scope, receive, identified)
        finally:
            CURRENT.reset(token)
            path = str(scope.get("path", ""))
            level = logging.DEBUG if path in self.quiet else logging.INFO
            if access_log.isEnabledFor(level):
                client = scope.get("client")
                fields = {
                    **record.identity(),
                    "transport": "rest",
                    "method": scope.get("method", ""),
                    "route": path,
                    "status": answered[0],
                    "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
                    "client": client[0] if client else "",
                    **record.fields,
                }
                message = f"{fields['method']} {path} {answered[0]}"
                log_access(access_log, message, fields, level)


class _Probes:
    """Liveness (the process answers) and readiness (every model has a version, gRPC is
    open, not draining)."""

    def __init__(self, dataplane: Dataplane, state: ServerState) -> None:
        self._dataplane = dataplane
        self._state = state

    async def healthz(self) -> dict[str, str]:
        return {"status": "alive"}

    async def readyz(self) -> JSONResponse:
        reasons = ["server is shutting down"] if self._state.draining else []
        reasons += self._dataplane.repository.readiness()
        if not self._state.grpc_open and not reasons:
            reasons.append("the gRPC port is not open yet")
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready"})

    def add_to(self, app: FastAPI) -> None:
        app.add_api_route("/healthz", self.healthz, methods=["GET"])
        app.add_api_route("/readyz", self.readyz, methods=["GET"])


class _Metrics:
    """Prometheus' text format at /metrics, and where TF Serving's monitoring config puts it."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    async def render(self) -> Response:
        return Response(self._metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def add_to(self, app: FastAPI, prometheus_path: str | None) -> None:
        app.add_api_route("/metrics", self.render, methods=["GET"])
        if prometheus_path and prometheus_path != "/metrics":
            # Scrape configs written for TF Serving keep working.
            app.add_api_route(prometheus_path, self.render, methods=["GET"])


def _version(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise InvalidArgument(f"version must be a non-negative integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class _ModelPath:
    """The model a /v1/models URL names, and the version or label it names, if any."""

    name: str
    version: str | None
    label: str | None

    @classmethod
    def of(cls, request: Request) -> _ModelPath:
        params = request.path_params
        return cls(params["name"], params.get("version"), params.get("label"))

    def choice(self) -> tuple[int | None, str | None]:
        return _version(self.version), self.label


async def _read_body(request: Request, limit: int, seconds: float) -> bytes:
    """The whole body within ``seconds`` (408 after: a client trickling its body must
    not hold a request slot) and ``limit`` bytes (413)."""
    try:
        async with asyncio.timeout(seconds):
            return await _read_capped(request, limit)
    except TimeoutError:
        raise InvalidArgument(
            f"the request body did not arrive within {seconds:g} s", http_status=408
        ) from None


async def _read_capped(request: Request, limit: int) -> bytes:
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


class _RestPredict:
    """A REST Predict as :meth:`Dataplane.predict` decodes it: the body is read before a
    version is held, then parsed within what that version's signature can take."""

    def __init__(
        self,
        request: Request,
        path: _ModelPath,
        *,
        max_body_bytes: int,
        max_rows: int,
        body_timeout: float,
    ) -> None:
        self._request = request
        self._path = path
        self._max_body_bytes = max_body_bytes
        self._max_rows = max_rows
        self._body_timeout = body_timeout
        self._body = b""
        self.signature_name = ""
        self.columnar = False

    async def receive(self) -> PredictTarget:
        self._body = await _read_body(self._request, self._max_body_bytes, self._body_timeout)
        version, label = self._path.choice()
        return PredictTarget(version, label)

    async def decode(self, signature: Signature) -> dict[str, np.ndarray]:
        # The structure is bounded by what the model can take before anything is decoded.
        budget = rest_codec.json_budget(signature, self._max_rows)
        parsed = await run_in_threadpool(rest_codec.parse_body, self._body, budget)
        self.signature_name = parsed.signature_name
        self.columnar = parsed.columnar
        return await run_in_threadpool(rest_codec.decode_inputs, parsed, signature, self._max_rows)


class _ModelRoutes:
    """TF Serving's /v1/models routes for status, metadata and predict, each with the
    three ways to name a version."""

    def __init__(
        self,
        dataplane: Dataplane,
        *,
        max_message_bytes: int,
        max_batch_rows: int,
        body_timeout: float,
    ):
        self._dataplane = dataplane
        self._max_message_bytes = max_message_bytes
        self._max_batch_rows = max_batch_rows
        self._body_timeout = body_timeout

    async def status(self, request: Request) -> dict[str, Any]:
        path = _ModelPath.of(request)
        version, label = path.choice()
        statuses = self._dataplane.status(path.name, version=version, label=label)
        return rest_codec.status_json(statuses)

    async def metadata(self, request: Request) -> dict[str, Any]:
        path = _ModelPath.of(request)
        version, label = path.choice()
        result = self._dataplane.metadata(
            path.name, ("signature_def", "model_info"), version=version, label=label
        )
        return rest_codec.metadata_json(result)

    async def predict(self, request: Request) -> Response:
        path = _ModelPath.of(request)
        call = _RestPredict(
            request,
            path,
            max_body_bytes=self._max_message_bytes,
            max_rows=self._max_batch_rows,
            body_timeout=self._body_timeout,
        )
        result = await self._dataplane.predict(path.name, call, transport="rest")
        body = await run_in_threadpool(
            rest_codec.encode_outputs, result.outputs, columnar=call.columnar
        )
        return Response(body, media_type="application/json")

    def add_to(self, app: FastAPI) -> None:
        model = "/v1/models/{name}"
        for choice in VERSION_CHOICES:
            app.add_api_route(f"{model}{choice}", self.status, methods=["GET"])
        for choice in VERSION_CHOICES:
            app.add_api_route(f"{model}{choice}/metadata", self.metadata, methods=["GET"])
        for choice in VERSION_CHOICES:
            app.add_api_route(f"{model}{choice}:predict", self.predict, methods=["POST"])


def build_app(
    dataplane: Dataplane,
    state: ServerState,
    *,
    max_message_bytes: int,
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT_REST,
    body_timeout: float = DEFAULT_REST_BODY_TIMEOUT,
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
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
        )
    # Added after CORS, so outside it: a request past the limit is answered before anything
    # runs; the access log, added last, is outermost and sees every answer.
    app.middleware("http")(_InFlightLimit(dataplane.metrics, max_concurrent))
    quiet = frozenset({"/healthz", "/readyz", "/metrics", prometheus_path or "/metrics"})
    app.add_middleware(_AccessLog, quiet=quiet)
    _add_error_handlers(app)
    _Probes(dataplane, state).add_to(app)
    _Metrics(dataplane.metrics).add_to(app, prometheus_path)
    _ModelRoutes(
        dataplane,
        max_message_bytes=max_message_bytes,
        max_batch_rows=max_batch_rows,
        body_timeout=body_timeout,
    ).add_to(app)
    return app
