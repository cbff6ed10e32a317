"""Errors of the model server, each with a transport-neutral code.

Each transport maps :class:`Code` in exactly one place: the gRPC servicer's
decorator (``grpc_api``) and the FastAPI exception handler (``rest_api``).
Anything that is not a :class:`ServingError` becomes INTERNAL / 500 with a
generic message; the details go to the log only.

    ServingError
    ├── InvalidArgument     bad input: signature, names, dtypes, shapes, tensors, JSON
    ├── NotFound            unknown model, version or label
    ├── PermissionDenied    config reload turned off, a model outside the allowed roots
    ├── ResourceExhausted   batching queue full, message over the size limit
    ├── Unavailable         model not loaded yet, server draining
    └── Internal            the runtime failed
"""

from __future__ import annotations

import enum


class Code(enum.Enum):
    """A status code: its gRPC name and its HTTP status."""

    INVALID_ARGUMENT = ("INVALID_ARGUMENT", 400)
    NOT_FOUND = ("NOT_FOUND", 404)
    PERMISSION_DENIED = ("PERMISSION_DENIED", 403)
    RESOURCE_EXHAUSTED = ("RESOURCE_EXHAUSTED", 429)
    UNAVAILABLE = ("UNAVAILABLE", 503)
    INTERNAL = ("INTERNAL", 500)

    @property
    def grpc_name(self) -> str:
        return self.value[0]

    @property
    def http_status(self) -> int:
        return self.value[1]


class ServingError(Exception):
    """Base of every error a client may see; ``message`` is safe to show."""

    code = Code.INTERNAL

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        # A few cases share a gRPC code but not an HTTP status (413 vs 429).
        self.http_status = http_status or self.code.http_status


class InvalidArgument(ServingError):
    code = Code.INVALID_ARGUMENT


class NotFound(ServingError):
    code = Code.NOT_FOUND


class PermissionDenied(ServingError):
    code = Code.PERMISSION_DENIED


class ResourceExhausted(ServingError):
    code = Code.RESOURCE_EXHAUSTED


class Unavailable(ServingError):
    code = Code.UNAVAILABLE


class Internal(ServingError):
    code = Code.INTERNAL


INTERNAL_MESSAGE = "internal error; see the model server's log"
