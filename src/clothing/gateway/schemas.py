"""Request and response bodies of the HTTP API, with the examples shown at ``/docs``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

EXAMPLE_URL = "https://bit.ly/mlbookcamp-pants"

_PREDICTION_EXAMPLE: dict[str, Any] = {
    "label": "pants",
    "predictions": {
        "pants": 0.9712,
        "shorts": 0.0121,
        "skirt": 0.0063,
        "dress": 0.0038,
        "t-shirt": 0.0021,
        "shirt": 0.0015,
        "longsleeve": 0.0012,
        "outwear": 0.0009,
        "shoes": 0.0006,
        "hat": 0.0003,
    },
    "model": {"name": "clothing-model", "version": 3},
    "timing_ms": {"fetch": 84.2, "preprocess": 3.1, "inference": 6.4, "total": 94.0},
}


class PredictRequest(BaseModel):
    """One image: a URL the gateway downloads, or the image bytes in base64."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"url": EXAMPLE_URL}, {"image_b64": "/9j/4AAQSkZJRg..."}]},
    )

    url: str | None = Field(default=None, max_length=4096, description="http(s) URL of the image")
    image_b64: str | None = Field(
        default=None, description="The encoded image (JPEG, PNG, WebP or GIF) in base64"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> PredictRequest:
        if (self.url is None) == (self.image_b64 is None):
            raise ValueError("give exactly one of 'url' or 'image_b64'")
        return self


class BatchRequest(BaseModel):
    """Several images: URLs, or base64 images."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"urls": [EXAMPLE_URL, "https://bit.ly/mlbookcamp-pants"]}]
        },
    )

    urls: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None, description="http(s) URLs of the images"
    )
    images_b64: list[str] | None = Field(default=None, description="Encoded images in base64")

    @model_validator(mode="after")
    def _exactly_one(self) -> BatchRequest:
        if (self.urls is None) == (self.images_b64 is None):
            raise ValueError("give exactly one of 'urls' or 'images_b64'")
        if not (self.urls or self.images_b64):
            raise ValueError("the list of images is empty")
        return self


class ModelRef(BaseModel):
    name: str
    version: int


class Prediction(BaseModel):
    """The answer for one image: top class, every class's probability (high to low)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_PREDICTION_EXAMPLE]})

    label: str
    predictions: dict[str, float]
    model: ModelRef
    timing_ms: dict[str, float]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. address_refused")
    message: str
    request_id: str | None = Field(
        default=None,
        description="The request's id (also in the X-Request-ID header): quote it when "
        "reporting a problem; absent on a batch's per-image errors",
    )


class ErrorBody(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "address_refused",
                        "message": "address 127.0.0.1 of 'localhost' is refused (loopback)",
                        "request_id": "3f2a9c0d8e7b4f61a5c2d9e8f7a6b5c4",
                    }
                }
            ]
        }
    )

    error: ErrorDetail


class BatchItem(BaseModel):
    """Either a prediction's fields or ``error``, per image, in request order."""

    label: str | None = None
    predictions: dict[str, float] | None = None
    model: ModelRef | None = None
    timing_ms: dict[str, float] | None = None
    error: ErrorDetail | None = None


class BatchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        _PREDICTION_EXAMPLE,
                        {"error": {"code": "not_an_image", "message": "the bytes are not..."}},
                    ]
                }
            ]
        }
    )

    results: list[BatchItem]


class Health(BaseModel):
    status: str
    model: ModelRef | None = None
    detail: str | None = None
