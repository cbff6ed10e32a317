"""One HTTP/1.1 GET on one fresh connection to an address that was already checked.

The gateway's downloads need nothing of a general HTTP client: no pooling
(a pooled connection is keyed by IP, and reusing one verified for another name
would skip that name's TLS check), no proxies, no cookies, no content decoding
(no ``Accept-Encoding`` is sent, so nothing can inflate behind the size cap).
A general client costs about 2 ms of CPU per download on this project's
benchmark machine; this costs a fraction of that, which matters when a small
photo's whole request costs about 20 ms. Framing (Content-Length, chunked,
read-to-close) is parsed by httptools, the llhttp binding uvicorn uses, not by
hand.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httptools

# Status line plus headers; a host that sends more is not an image host. Trailer
# fields after a chunked body count against it too (and are dropped: nothing reads them).
MAX_HEAD_BYTES = 64 * 1024
# Bytes on the wire per body byte allowed at most (chunk sizes, extensions, CRLFs):
# a real server's chunks are kilobytes, not the 1-byte chunks that would make a
# capped body arrive as six times its size.
WIRE_BYTES_PER_BODY_BYTE = 2
_READ_SIZE = 64 * 1024

T = TypeVar("T")
Opener = Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class HttpGetError(Exception):
    """The exchange failed; ``in_body`` says whether the headers had arrived."""

    def __init__(self, message: str, *, in_body: bool = False) -> None:
        super().__init__(message)
        self.in_body = in_body


class HttpGetTimeout(HttpGetError):
    """Connecting, sending or one read took longer than its timeout."""


class HttpConnectError(HttpGetError):
    """No connection: refused, unreachable, timed out or a failed TLS handshake."""


class ByteBudget:
    """Bytes downloaded or waiting to be decoded, all downloads of the process together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0


class Lease:
    """What one download holds of a :class:`ByteBudget`, until :meth:`release`."""

    def __init__(self, budget: ByteBudget | None) -> None:
        self.budget = budget
        self.held = 0

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes; False (nothing counted) when the budget has no room."""
        if self.budget is None:
            return True
        if self.budget.held + size > self.budget.limit:
            return False
        self.budget.held += size
        self.held += size
        return True

    def release(self) -> None:
        if self.budget is not None:
            self.budget.held -= self.held
        self.held = 0


class BudgetExhausted(HttpGetError):
    """The process's downloads together hold their budget: this one must wait its turn."""

    def __init__(self) -> None:
        super().__init__("download budget exhausted", in_body=True)


class BodyTooLarge(HttpGetError):
    """The body is over the cap; ``announced`` is the Content-Length when that said so."""

    def __init__(self, announced: int | None) -> None:
        super().__init__("body over the cap", in_body=True)
        self.announced = announced


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


@dataclass
class _Message:
    """httptools callbacks collect the response here."""

    cap: int
    lease: Lease
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    headers_done: bool = False
    complete: bool = False
    over_cap: bool = False
    over_budget: bool = False
    trailer_bytes: int = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers_done:  # a trailer: counted, never kept (it could say anything)
            self.trailer_bytes += len(name) + len(value) + 4
            return
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, data: bytes) -> None:
        # Raising inside a callback would lose the reason; the read loop checks the flag.
        if len(self.body) + len(data) > self.cap:
            self.over_cap = True
        elif not self.lease.take(len(data)):
            self.over_budget = True
        else:
            self.body += data

    def on_message_complete(self) -> None:
        self.complete = True


DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_READ_TIMEOUT = 5.0


@dataclass(frozen=True)
class HttpGetter:
    """GETs with per-operation timeouts and a body cap; the caller applies a total deadline."""

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    tls: ssl.SSLContext = field(default_factory=ssl.create_default_context)
    user_agent: str = "clothing-gateway"
    open_connection: Opener = asyncio.open_connection

    async def get(
        self,
        address: str,
        port: int,
        *,
        host_header: str,
        target: str,
        tls_name: str | None,
        max_bytes: int,
        lease: Lease | None = None,
    ) -> Response:
        """GET ``target`` from ``address:port``; TLS (with SNI and checks for ``tls_name``) if set.

        Only a 200 answer's body is read; for any other status the headers are enough.
        The body's bytes are counted in ``lease`` as they arrive (the caller releases it).
        """
        reader, writer = await self._connect(address, port, tls_name)
        try:
            request = (
                f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\n"
                f"User-Agent: {self.user_agent}\r\nAccept: image/*\r\nConnection: close\r\n\r\n"
            )
            writer.write(request.encode("latin-1"))
            await self._timed(writer.drain())
            return await self._read(reader, max_bytes, lease or Lease(None))
        finally:
            # Abort, not close: nothing is left to say, and no FIN handshake to wait for.
            writer.transport.abort()

    async def _connect(
        self, address: str, port: int, tls_name: str | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        tls_options: dict[str, object] = {}
        if tls_name is not None:
            tls_options = {"ssl": self.tls, "server_hostname": tls_name}
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await self.open_connection(address, port, limit=_READ_SIZE, **tls_options)
        except TimeoutError:
            raise HttpConnectError("connect timed out") from None
        except (OSError, ValueError, OverflowError) as error:  # refused, unreachable, TLS
            raise HttpConnectError(f"{type(error).__name__}: {error}") from None

    async def _timed(self, step: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.read_timeout):
                return await step
        except TimeoutError:
            raise HttpGetTimeout("read timed out") from None

    async def _read(self, reader: asyncio.StreamReader, max_bytes: int, lease: Lease) -> Response:
        message = _Message(cap=max_bytes, lease=lease)
        parser = httptools.HttpResponseParser(message)
        head_bytes = wire_bytes = 0
        wire_cap = WIRE_BYTES_PER_BODY_BYTE * max_bytes + 2 * MAX_HEAD_BYTES
        while True:
            chunk = await self._next_chunk(reader, message)
            if not chunk:
                return self._at_end_of_stream(message, parser)
            wire_bytes += len(chunk)
            if wire_bytes > wire_cap:
                raise HttpGetError("response framing too large", in_body=message.headers_done)
            if not message.headers_done:
                head_bytes += len(chunk)
            try:
                parser.feed_data(chunk)
            except httptools.HttpParserError:
                # Bytes past a complete message (more than Content-Length) are ignored.
                if not message.complete:
                    raise HttpGetError("malformed response", in_body=message.headers_done) from None
            if message.headers_done:
                response = self._so_far(message, parser.get_status_code(), max_bytes)
                if response is not None:
                    return response
            elif head_bytes > MAX_HEAD_BYTES:
                raise HttpGetError("response headers too large")
            if message.trailer_bytes > MAX_HEAD_BYTES:
                raise HttpGetError("response trailers too large", in_body=True)

    async def _next_chunk(self, reader: asyncio.StreamReader, message: _Message) -> bytes:
        try:
            chunk = await self._timed(reader.read(_READ_SIZE))
        except HttpGetTimeout as error:
            error.in_body = message.headers_done
            raise
        except (OSError, ValueError) as error:  # reset, TLS errors mid-stream
            raise HttpGetError(type(error).__name__, in_body=message.headers_done) from None
        return chunk

    @staticmethod
    def _so_far(message: _Message, status: int, max_bytes: int) -> Response | None:
        """The response once it is known, ``None`` while more body is needed."""
        if status != 200:
            return Response(status, message.headers, b"")
        announced = message.headers.get("content-length", "")
        if announced.isdigit() and int(announced) > max_bytes:
            raise BodyTooLarge(int(announced))
        if message.over_cap:
            raise BodyTooLarge(None)
        if message.over_budget:
            raise BudgetExhausted
        if message.complete:
            return Response(status, message.headers, bytes(message.body))
        return None

    @staticmethod
    def _at_end_of_stream(message: _Message, parser: httptools.HttpResponseParser) -> Response:
        if not message.headers_done:
            raise HttpGetError("connection closed before the response headers")
        framed = (
            "content-length" in message.headers
            or "chunked" in message.headers.get("transfer-encoding", "").lower()
        )
        if framed and not message.complete:
            raise HttpGetError("connection closed before the end of the body", in_body=True)
        # Without Content-Length or chunking, the body is whatever came before the close.
        return Response(parser.get_status_code(), message.headers, bytes(message.body))
