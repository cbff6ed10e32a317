"""Request-head limits for uvicorn's httptools protocol: a size cap (431) and a deadline.

uvicorn uses httptools whenever it is installed (both tiers install it: it is the
faster parser), and its httptools protocol has neither limit: the 16 KiB cap it
documents applies to h11 alone, so megabytes of header lines are read and kept,
and a connection that sends one header line now and then stays open forever
(its keep-alive timer only runs between requests). :func:`limited_protocol`
builds the protocol class both tiers pass to ``uvicorn.Config(http=...)``:

- the request line and header fields of one request, trailers of a chunked body
  included, may take at most ``max_bytes``; past that the answer is 431 and the
  connection closes, before the app sees anything;
- a request's head must be complete within ``timeout`` seconds of its first byte
  (or of the connection opening); past that the answer is 408 and the connection
  closes. Bodies have deadlines of their own in each tier.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_HEADER_TIMEOUT = 10.0
# What a header field costs beyond its name and value: ": " and CRLF.
_FIELD_FRAMING = 4


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing at once."""


class HeadLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on a request's head and a deadline for it."""

    max_header_bytes = DEFAULT_MAX_HEADER_BYTES
    header_timeout = DEFAULT_HEADER_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:  # bytes after a refusal are not parsed
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        # httptools hands _HeadTooLarge to uvicorn as a parser error: tell which it was.
        if self._head_bytes > self.max_header_bytes:
            self._refuse(431, "request header fields too large")
        elif not self._refused:
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + _FIELD_FRAMING)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_header_bytes:
            raise _HeadTooLarge

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered; its body has its own deadline
        self._refuse(408, "request headers did not arrive in time")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` and close, without the app; once per connection."""
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        body = message.encode("ascii")
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()


def limited_protocol(
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
) -> type[asyncio.Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type(
        "HeadLimitedProtocol",
        (HeadLimitedProtocol,),
        {"max_header_bytes": max_header_bytes, "header_timeout": header_timeout},
    )
