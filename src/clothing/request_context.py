"""One request id and one W3C trace context per request, across both tiers.

The gateway takes ``X-Request-ID`` from its client when the value is
well-formed (1 to 128 visible ASCII characters, no quotes or backslashes) and
makes one otherwise; it answers with it in a response header and in error
bodies, and sends it to the model server as gRPC metadata ``x-request-id``.
``traceparent`` (https://www.w3.org/TR/trace-context/) travels the same way:
a valid one is passed on, a missing or malformed one is replaced by a fresh,
unsampled one, so every access line of both tiers carries a trace id.

A transport sets :data:`CURRENT` to a :class:`RequestRecord` when a request
arrives; code deeper down adds what the access line should say with
:func:`note`, without knowing about HTTP or gRPC. A context variable costs a
lookup per call and follows the request through ``await`` (not into worker
threads, which need nothing from it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

REQUEST_ID_HEADER = "x-request-id"
TRACEPARENT_HEADER = "traceparent"
MAX_REQUEST_ID_LENGTH = 128

# Visible ASCII without '"' and '\': safe in a header, in gRPC metadata and in a log line.
_REQUEST_ID = re.compile(rf"[!#-\[\]-~]{{1,{MAX_REQUEST_ID_LENGTH}}}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ASGI_NAMES = frozenset({REQUEST_ID_HEADER.encode(), TRACEPARENT_HEADER.encode()})
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16


def new_request_id() -> str:
    return os.urandom(16).hex()


def request_id(offered: str | None) -> str:
    """``offered`` when it is well-formed, else a new id."""
    if offered is not None and _REQUEST_ID.fullmatch(offered):
        return offered
    return new_request_id()


def valid_traceparent(value: str) -> bool:
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return False
    version, trace, parent, _flags = match.groups()
    return version != "ff" and trace != _ZERO_TRACE and parent != _ZERO_PARENT


def traceparent(offered: str | None) -> str:
    """``offered`` when valid, else a new trace, not sampled (flags 00)."""
    if offered is not None and valid_traceparent(offered):
        return offered
    fresh = os.urandom(24).hex()  # one call for both ids
    return f"00-{fresh[:32]}-{fresh[32:]}-00"


def trace_id(value: str) -> str:
    """The trace id of a valid traceparent."""
    return value[3:35]


@dataclass(slots=True)
class RequestRecord:
    """One request's identity, and what its access line says besides."""

    request_id: str
    traceparent: str
    fields: dict[str, Any] = field(default_factory=dict)
    # Whether the caller sent the trace context (else it was made here).
    offered: bool = False

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, str]]) -> RequestRecord:
        """From HTTP headers or gRPC metadata (lower-case names); the first of each counts."""
        offered_id = offered_parent = None
        for name, value in headers:
            if name == REQUEST_ID_HEADER and offered_id is None:
                offered_id = value
            elif name == TRACEPARENT_HEADER and offered_parent is None:
                offered_parent = value
        context = traceparent(offered_parent)
        return cls(request_id(offered_id), context, offered=context == offered_parent)

    @classmethod
    def from_asgi(cls, headers: Iterable[tuple[bytes, bytes]]) -> RequestRecord:
        """From an ASGI scope's headers (names in lower case)."""
        return cls.from_headers(
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in headers
            if name in _ASGI_NAMES
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What goes to the next tier: gRPC metadata or HTTP headers."""
        return ((REQUEST_ID_HEADER, self.request_id), (TRACEPARENT_HEADER, self.traceparent))

    def identity(self) -> dict[str, str]:
        return {"request_id": self.request_id, "trace_id": trace_id(self.traceparent)}


CURRENT: ContextVar[RequestRecord | None] = ContextVar("clothing_request", default=None)


def current() -> RequestRecord | None:
    return CURRENT.get()


def note(**fields: Any) -> None:
    """Add ``fields`` to the current request's access line (nothing outside a request)."""
    record = CURRENT.get()
    if record is not None:
        record.fields.update(fields)


def outgoing_metadata(context: str | None = None) -> tuple[tuple[str, str], ...] | None:
    """The current request's id and trace context (``context`` instead, when given: the
    traceparent of a span around the call) for a call to the next tier."""
    record = CURRENT.get()
    if record is None:
        return None
    return (
        (REQUEST_ID_HEADER, record.request_id),
        (TRACEPARENT_HEADER, context or record.traceparent),
    )
