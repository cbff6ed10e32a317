"""Turn an HTTP request body into :class:`ImageInput` items, with the size limits applied.

``/predict`` takes JSON ``{"url"}`` / ``{"image_b64"}`` or a multipart ``file``;
``/predict/batch`` takes JSON ``{"urls"}`` / ``{"images_b64"}`` or multipart ``files``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartParser

from clothing.gateway.errors import BadRequest, TooLarge, UnsupportedMediaType, ValidationFailed
from clothing.gateway.schemas import BatchRequest, PredictRequest
from clothing.gateway.service import ImageInput

# Uploads stay in memory, bounded by the per-route body caps and the bytes all bodies
# may hold at once (guard.BodyBudget), instead of spilling past 1 MB to /tmp (a 64 MiB
# emptyDir in the pod) where a slow upload would keep them.
MultiPartParser.spool_max_size = 1 << 40


def describe_errors(errors: Any) -> str:
    parts = []
    for item in errors:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return "; ".join(parts) or "invalid request"


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _json_body(request: Request, model: type[BaseModel], max_items: int = 1) -> Any:
    raw = await request.body()
    # Counted on the bytes before parsing: each string is two quotes (base64 and URLs
    # hold none unescaped), so a body of thousands of tiny items is never built.
    strings = raw.count(b'"') // 2
    if strings > 2 * max_items + 8:
        raise ValidationFailed(f"the body holds {strings} strings; at most {max_items} items")
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise ValidationFailed(describe_errors(error.errors())) from None


def _decode_b64(text: str, cap: int) -> bytes:
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]  # a data: URL, as a browser's FileReader makes
    if len(text) > cap * 4 // 3 + 8:
        raise TooLarge(f"image is over the limit of {cap} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("image_b64 is not valid base64") from None


async def _read_upload(upload: UploadFile, cap: int) -> bytes:
    data = await upload.read(cap + 1)
    if len(data) > cap:
        raise TooLarge(f"image is over the limit of {cap} bytes")
    return data


async def single_input(request: Request, cap: int) -> ImageInput:
    media_type = _media_type(request)
    if media_type == "application/json":
        body: PredictRequest = await _json_body(request, PredictRequest)
        if body.url is not None:
            return ImageInput(url=body.url)
        return ImageInput(data=_decode_b64(body.image_b64 or "", cap))
    if media_type == "multipart/form-data":
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ValidationFailed("multipart body needs a 'file' field with the image")
            return ImageInput(data=await _read_upload(upload, cap))
    raise UnsupportedMediaType("send application/json or multipart/form-data")


async def batch_inputs(request: Request, cap: int, limit: int) -> list[ImageInput]:
    media_type = _media_type(request)
    if media_type == "application/json":
        body: BatchRequest = await _json_body(request, BatchRequest, limit)
        count = len(body.urls or body.images_b64 or [])
        if count > limit:
            raise ValidationFailed(f"{count} images in one batch; at most {limit} are accepted")
        if body.urls is not None:
            return [ImageInput(url=url) for url in body.urls]
        return [ImageInput(data=_decode_b64(text, cap)) for text in body.images_b64 or []]
    if media_type == "multipart/form-data":
        try:
            async with request.form(max_files=limit, max_fields=limit + 8) as form:
                uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
                if not uploads:
                    raise ValidationFailed("multipart body needs one or more 'files' fields")
                return [ImageInput(data=await _read_upload(f, cap)) for f in uploads]
        except StarletteHTTPException as error:
            # Starlette refuses more files than max_files with a 400.
            raise ValidationFailed(f"at most {limit} files per batch ({error.detail})") from None
    raise UnsupportedMediaType("send application/json or multipart/form-data")
