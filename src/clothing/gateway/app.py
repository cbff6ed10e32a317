"""The FastAPI layer: parse the request, call :class:`Classifier`, shape the answer.

Errors are mapped in exactly one place (:func:`.guard.error_response`); the ASGI
middleware around the app (:class:`.guard.Guard`) caps the request body and the
predictions in flight, counts requests per route and status, and turns any
unexpected exception into a plain 500 without a trace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from clothing import __version__
from clothing.gateway.addresses import AddressPolicy, AllowList, BoundedResolver, Resolver
from clothing.gateway.api_docs import add_api_docs
from clothing.gateway.decode_pool import DecodePool
from clothing.gateway.errors import GatewayError, ValidationFailed
from clothing.gateway.fetch import ImageFetcher, ImageGetter, new_image_client
from clothing.gateway.guard import Guard, error_body, error_response
from clothing.gateway.http_get import ByteBudget
from clothing.gateway.inputs import batch_inputs, describe_errors, single_input
from clothing.gateway.metrics import GatewayMetrics
from clothing.gateway.model_client import ModelClient
from clothing.gateway.schemas import (
    BatchItem,
    BatchRequest,
    BatchResponse,
    ErrorBody,
    Health,
    ModelRef,
    Prediction,
    PredictRequest,
)
from clothing.gateway.service import Classification, Classifier
from clothing.gateway.settings import GatewaySettings

STATIC = Path(__file__).parent / "static"
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Bad request, or the bytes are not a JPEG/PNG/WebP/GIF image",
        403: "The URL's scheme or address is refused",
        408: "The request body did not arrive within --body-timeout",
        413: "Image (bytes or pixels) or request too large",
        429: "Too many predictions in flight, or this client is over its rate limit; retry "
        "after Retry-After seconds",
        415: "Neither JSON nor multipart/form-data",
        422: "The JSON body does not match the schema",
        502: "The image host or the model server failed",
        503: "The model server is unavailable",
        504: "The image host or the model server timed out",
    }.items()
}


def create_app(
    settings: GatewaySettings,
    *,
    image_client: ImageGetter | None = None,
    resolver: Resolver | None = None,
) -> FastAPI:
    """Build the gateway; ``image_client`` and ``resolver`` let tests bring their own."""
    metrics = GatewayMetrics()
    labels = settings.load_labels()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = image_client or new_image_client(settings.fetch_limits)
        model = ModelClient(
            settings.tf_serving_host,
            settings.model_name,
            signature=settings.signature,
            deadline=settings.grpc_deadline,
            preprocessing=settings.preprocessing_override,
        )
        system_resolver = BoundedResolver(settings.dns_threads, settings.dns_timeout)
        policy = AddressPolicy(AllowList.parse(settings.allow_hosts), resolver or system_resolver)
        # Each thread hands its image to a worker process of its own and waits.
        decoders = DecodePool(settings.workers, settings.decode_timeout)
        app.state.decoders = decoders
        with ThreadPoolExecutor(settings.workers, thread_name_prefix="preprocess") as pool:
            app.state.classifier = Classifier(
                fetcher=ImageFetcher(
                    client, policy, settings.fetch_limits, ByteBudget(settings.download_budget)
                ),
                model=model,
                pool=pool,
                metrics=metrics,
                max_pixels=settings.max_pixels,
                max_decode_bytes=settings.decode_budget,
                decode=decoders.prepare,
                labels=labels,
                ready_cache_seconds=settings.ready_cache_seconds,
            )
            try:
                yield
            finally:
                await model.close()
                system_resolver.close()
                decoders.close()

    app = FastAPI(
        title="Clothing classifier gateway",
        version=__version__,
        description="Classify a clothing photo (URL, upload or base64) with the served model.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    add_api_docs(app)
    app.state.settings = settings
    app.state.metrics = metrics
    app.add_exception_handler(GatewayError, _on_gateway_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http_error)  # type: ignore[arg-type]
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
        )
    app.add_middleware(
        Guard,
        metrics=metrics,
        body_caps={
            "/predict": settings.max_body_bytes,
            "/predict/batch": settings.max_batch_body_bytes,
        },
        max_buffered=settings.max_buffered_body_bytes,
        body_timeout=settings.body_timeout,
        routes=app.router.routes,
        max_inflight=settings.max_inflight,
        rate_limit=settings.client_buckets(),
        allowed_hosts=settings.allowed_hosts,
    )
    _add_routes(app, settings)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _on_gateway_error(_request: Request, error: GatewayError) -> JSONResponse:
    return error_response(error)


async def _on_validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    return error_response(ValidationFailed(describe_errors(error.errors())))


async def _on_http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    body = error_body(code, str(error.detail))
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


def _body_doc(model: type[BaseModel], multipart: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": model.model_json_schema()},
                "multipart/form-data": {"schema": multipart},
            },
        }
    }


def _add_routes(app: FastAPI, settings: GatewaySettings) -> None:
    cap = settings.max_image_bytes

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz", response_model=Health, response_model_exclude_none=True, tags=["health"])
    async def healthz() -> Health:
        """Liveness: the gateway process answers."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    async def readyz(request: Request) -> Response:
        """Readiness: the model server answers and the model is AVAILABLE."""
        classifier: Classifier = request.app.state.classifier
        if await classifier.ready():
            info = await classifier.model_info()
            body = Health(status="ready", model=ModelRef(name=info.name, version=info.version))
            return JSONResponse(body.model_dump(exclude_none=True))
        body = Health(status="unavailable", detail="model server or model not available")
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)

    if not settings.metrics_port:  # else served on their own port (cli.run)

        @app.get("/metrics", tags=["health"], response_class=Response)
        async def metrics_endpoint(request: Request) -> Response:
            """Prometheus metrics."""
            metrics: GatewayMetrics = request.app.state.metrics
            return Response(metrics.render(), media_type=metrics.content_type)

    upload_one = {
        "type": "object",
        "properties": {"file": {"type": "string", "format": "binary"}},
        "required": ["file"],
    }

    @app.post(
        "/predict",
        response_model=Prediction,
        responses=_ERRORS,
        tags=["predict"],
        openapi_extra=_body_doc(PredictRequest, upload_one),
    )
    async def predict(request: Request) -> Prediction:
        """Classify one image: JSON ``{"url"}`` or ``{"image_b64"}``, or a multipart ``file``."""
        classifier: Classifier = request.app.state.classifier
        item = await single_input(request, cap)
        return _prediction(await classifier.classify(item))

    upload_many = {
        "type": "object",
        "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
        "required": ["files"],
    }

    @app.post(
        "/predict/batch",
        response_model=BatchResponse,
        response_model_exclude_none=True,
        responses=_ERRORS,
        tags=["predict"],
        openapi_extra=_body_doc(BatchRequest, upload_many),
    )
    async def predict_batch(request: Request) -> BatchResponse:
        """Classify several images in one model call; per-image errors come back per item."""
        classifier: Classifier = request.app.state.classifier
        items = await batch_inputs(request, cap, settings.max_batch)
        results = await classifier.classify_batch(items)
        return BatchResponse(
            results=[
                BatchItem(error=r.to_dict())  # type: ignore[arg-type]
                if isinstance(r, GatewayError)
                else BatchItem(**_prediction(r).model_dump())
                for r in results
            ]
        )


def _prediction(result: Classification) -> Prediction:
    return Prediction(
        label=result.label,
        predictions=result.predictions,
        model=ModelRef(name=result.model_name, version=result.model_version),
        timing_ms=result.timing_ms,
    )
