"""Every error the gateway reports to a client, with its HTTP status and code.

The tree::

    GatewayError                    500 internal
    ├── BadRequest                  400 bad_request
    │   └── NotAnImage              400 not_an_image
    ├── AddressRefused              403 address_refused
    ├── BodyTimeout                 408 body_timeout
    ├── TooLarge                    413 too_large
    ├── Overloaded                  429 overloaded
    ├── RateLimited                 429 rate_limited
    ├── UnsupportedMediaType        415 unsupported_media_type
    ├── ValidationFailed            422 validation_error
    ├── ImageHostFailed             502 image_host_failed
    ├── ModelServerError            502 model_server_error
    ├── ModelUnavailable            503 model_unavailable
    └── UpstreamTimeout             504 timeout

The HTTP layer turns any of these into ``{"error": {"code", "message"}}`` in one
place; anything else becomes a 500 with a generic message.
"""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    """Base: a failure with a message that is safe to show to the client."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"


class NotAnImage(BadRequest):
    code = "not_an_image"


class AddressRefused(GatewayError):
    """``message`` is what the client sees; ``detail`` (the address and why it is refused)
    is for the log and for ``str()``, never for the client."""

    status = 403
    code = "address_refused"

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail
        if detail:
            self.args = (f"{message} [{detail}]",)


class BodyTimeout(GatewayError):
    status = 408
    code = "body_timeout"


class TooLarge(GatewayError):
    status = 413
    code = "too_large"


class Overloaded(GatewayError):
    status = 429
    code = "overloaded"


class RateLimited(GatewayError):
    """The client sent more than its share; ``retry_after`` whole seconds bring a token back."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(GatewayError):
    status = 422
    code = "validation_error"


class ImageHostFailed(GatewayError):
    status = 502
    code = "image_host_failed"


class ModelServerError(GatewayError):
    status = 502
    code = "model_server_error"


class ModelUnavailable(GatewayError):
    status = 503
    code = "model_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    code = "timeout"
