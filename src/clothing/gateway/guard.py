"""What every HTTP request to the gateway passes before and after the app, one piece each.

- :func:`with_response_headers`: ``nosniff`` and ``X-Request-ID`` on every answer; CSP
  and no framing on the page.
- :class:`BodyBudget`: the body is read whole under a deadline (408), within its
  route's cap (413) and within the cap on the bytes all requests hold together
  (429), before a prediction slot is taken: a client that sends headers and then
  stalls holds no slot.
- :class:`ClientLimit`: past its token bucket (``--rate-limit``, ``--rate-burst``) a
  client is refused at once with 429 + Retry-After, before its body is read.
- :class:`InflightLimit`: past ``max_inflight`` concurrent predictions a request is
  refused at once with 429 + Retry-After: under overload the gateway's memory and
  latency stay bounded instead of queueing without end.
- :func:`answer_unexpected_errors`: anything the app raises becomes a plain 500
  without a trace (logged here).
- :class:`RequestLog`: every answer, refusals included, is counted by route
  template (:class:`RouteNames`) and status, and logged as one access line
  (:mod:`clothing.logs`) under the request's id (:mod:`clothing.request_context`),
  which every answer carries in ``X-Request-ID``.
- :class:`HostCheck`: a ``Host`` header naming a host the gateway does not serve is
  refused (400), so a page whose name was re-pointed at a private address (DNS
  rebinding) cannot drive a gateway published there.

:class:`Guard`, the ASGI middleware, chains them. :func:`error_response` is the one
place a :class:`GatewayError` becomes an HTTP answer, and :func:`error_body` the
one shape of an error's body.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clothing import tracing
from clothing.gateway.errors import (
    BadRequest,
    BodyTimeout,
    GatewayError,
    Overloaded,
    RateLimited,
    TooLarge,
)
from clothing.gateway.metrics import GatewayMetrics
from clothing.gateway.ratelimit import ClientBuckets, client_key, exempt, retry_after_seconds
from clothing.logs import log_access
from clothing.request_context import CURRENT, REQUEST_ID_HEADER, RequestRecord

log = logging.getLogger("clothing.gateway")
access_log = logging.getLogger("clothing.gateway.access")

# The body cap of every route that takes no image (GET routes send none).
SMALL_BODY_BYTES = 64 * 1024

# Overload and model-server-down answers tell clients when to come back.
RETRY_AFTER_SECONDS = "1"


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """``{"error": {"code", "message", "request_id"}}``; the code goes to the access line."""
    error = {"code": code, "message": message}
    record = CURRENT.get()
    if record is not None:
        error["request_id"] = record.request_id
        record.fields["code"] = code
    return {"error": error}


def error_response(error: GatewayError) -> JSONResponse:
    """:func:`error_body` with the error's status (and Retry-After for 429/503)."""
    headers = None
    if isinstance(error, RateLimited):
        headers = {"Retry-After": str(error.retry_after)}
    elif error.status in (429, 503):
        headers = {"Retry-After": RETRY_AFTER_SECONDS}
    body = error_body(error.code, error.message)
    return JSONResponse(body, status_code=error.status, headers=headers)


# Every answer: browsers must not guess a type other than the one sent.
_NOSNIFF = [(b"x-content-type-options", b"nosniff")]
# The page: its own script and style only; photos may come from any http(s) URL the
# user pastes, or a blob: of a dropped file; no framing (clickjacking), no <base>.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' blob: data: https: http:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS = [
    (b"content-security-policy", PAGE_CSP.encode()),
    (b"x-frame-options", b"DENY"),
]


def with_response_headers(scope: Scope, send: Send, request_id: str) -> Send:
    """The security headers and the request's id on every answer."""
    extra = [
        (REQUEST_ID_HEADER.encode(), request_id.encode()),
        *_NOSNIFF,
        *(_PAGE_HEADERS if scope.get("path") == "/" else []),
    ]

    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return secured


class BodyBudget:
    """Reads request bodies whole: each within its route's cap, all together within one."""

    def __init__(self, caps: Mapping[str, int], max_buffered: int, timeout: float) -> None:
        self.caps = caps  # by path; other paths get SMALL_BODY_BYTES
        self.max_buffered = max_buffered
        self.timeout = timeout
        self.buffered = 0  # body bytes held by the requests in progress

    @asynccontextmanager
    async def read(self, scope: Scope, receive: Receive) -> AsyncIterator[bytes | None]:
        """The body (``None`` if the client went away), counted until the block ends.

        :class:`BodyTimeout`, :class:`TooLarge` or :class:`Overloaded` when it is refused.
        """
        held = [0]  # what this request added to ``buffered``, even if cut short
        try:
            try:
                with tracing.span("body read"):
                    body = await asyncio.wait_for(self._read(scope, receive, held), self.timeout)
            except TimeoutError:
                raise BodyTimeout(
                    f"the request body did not arrive within {self.timeout:g} s"
                ) from None
            yield body
        finally:
            self.buffered -= held[0]

    async def _read(self, scope: Scope, receive: Receive, held: list[int]) -> bytes | None:
        """Counted while it streams in: refused before the bytes are held."""
        cap = self.caps.get(str(scope.get("path", "")), SMALL_BODY_BYTES)
        announced = dict(scope["headers"]).get(b"content-length", b"")
        if announced.isdigit() and int(announced) > cap:
            raise TooLarge(f"request body over {cap} bytes")
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            if held[0] + len(chunk) > cap:
                raise TooLarge(f"request body over {cap} bytes")
            if self.buffered + len(chunk) > self.max_buffered:
                raise Overloaded("too many request bytes in flight")
            held[0] += len(chunk)
            self.buffered += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class ClientLimit:
    """Each client's requests within its token bucket; ``None`` buckets: no limit."""

    def __init__(self, buckets: ClientBuckets | None, metrics: GatewayMetrics) -> None:
        self.buckets = buckets
        self.metrics = metrics

    def check(self, scope: Scope) -> None:
        """:class:`RateLimited` when the request's client has no token left."""
        if self.buckets is None or exempt(str(scope.get("path", ""))):
            return
        client = scope.get("client")
        wait = self.buckets.take(client_key(client[0] if client else None))
        if wait:
            self.metrics.rate_limited.inc()
            raise RateLimited(
                "too many requests from this client", retry_after=retry_after_seconds(wait)
            )


class InflightLimit:
    """At most ``limit`` requests under ``prefix`` at once; one more is refused, not queued."""

    def __init__(self, limit: int, prefix: str = "/predict") -> None:
        self.limit = limit
        self.prefix = prefix
        self.current = 0

    @contextmanager
    def slot(self, scope: Scope) -> Iterator[None]:
        """Hold a slot for the block if the path needs one; :class:`Overloaded` if none is free."""
        limited = str(scope.get("path", "")).startswith(self.prefix)
        if limited and self.current >= self.limit:
            raise Overloaded(f"more than {self.limit} predictions in flight")
        self.current += limited
        try:
            yield
        finally:
            self.current -= limited


@dataclass
class _Answer:
    status: int = 500
    started: bool = False


async def answer_unexpected_errors(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> int:
    """Run ``app``; whatever it raises is logged and answered 500, if no answer had begun.

    Returns the status the client was given: 500 too when the app failed mid-answer.
    """
    answer = _Answer()

    async def noting_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status, answer.started = message["status"], True
        await send(message)

    try:
        await app(scope, receive, noting_send)
    except Exception:
        log.exception("unexpected error on %s", scope.get("path"))
        if not answer.started:
            body = error_body("internal", "internal error")
            await JSONResponse(body, status_code=500)(scope, receive, send)
        answer.status = 500
    return answer.status


class RouteNames:
    """The route template a request matches (never the raw path: metric labels stay few)."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        # The app's own list, filled after the middleware is declared: kept, not copied.
        self.routes = routes

    def __call__(self, scope: Scope) -> str:
        matched = getattr(scope.get("route"), "path", None)
        if matched:
            return str(matched)
        for route in self.routes:  # refused before routing: match it here
            if route.matches(scope)[0] == Match.FULL and hasattr(route, "path"):
                return str(route.path)
        return "unmatched"


# Probes and scrapes come every few seconds from machines: their lines are debug.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestLog:
    """Counts each answer by route and status (refusals by code), times it by route, and
    logs its access line."""

    def __init__(self, metrics: GatewayMetrics, routes: RouteNames) -> None:
        self.metrics = metrics
        self.routes = routes

    def record(self, scope: Scope, status: int, started: float, request: RequestRecord) -> None:
        route = self.routes(scope)
        seconds = time.perf_counter() - started
        self.metrics.requests.labels(route=route, status=str(status)).inc()
        self.metrics.request_seconds.labels(route=route).observe(seconds)
        code = request.fields.get("code")
        if code is not None and status < 500:
            self.metrics.refusals.labels(reason=code).inc()
        client = scope.get("client")
        fields = {
            **request.identity(),
            "method": scope.get("method", ""),
            "route": route,
            "status": status,
            "latency_ms": round(seconds * 1000.0, 3),
            # The trusted proxy's X-Forwarded-For, as uvicorn resolved it (--proxy-headers).
            "client": client[0] if client else "",
            **request.fields,
        }
        level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
        log_access(access_log, f"{fields['method']} {route} {status}", fields, level)


class HostCheck:
    """The ``Host`` names a request may use: an IP address, a name without a dot (a
    container or Service name), or one of ``allowed`` (``name``, ``.suffix`` for any
    name under it, ``*`` for any). Names are what a rebinding page controls: a public
    name re-pointed at 127.0.0.1 or a cluster address."""

    def __init__(self, allowed: Sequence[str]) -> None:
        entries = {entry.strip().lower().rstrip(".") for entry in allowed if entry.strip()}
        self.any = "*" in entries
        self.names = {entry for entry in entries if not entry.startswith(".")}
        self.suffixes = tuple(entry for entry in entries if entry.startswith("."))

    def check(self, scope: Scope) -> None:
        if self.any:
            return
        raw = dict(scope["headers"]).get(b"host", b"").decode("latin-1").strip().lower()
        name = _host_name(raw)
        if not name or "." not in name or _is_address(name) or name in self.names:
            return
        if name.endswith(self.suffixes) and name not in self.suffixes:
            return
        raise BadRequest(f"the Host header names {name!r}, which this gateway does not serve")


def _host_name(host: str) -> str:
    """``host[:port]`` or ``[v6]:port`` -> the name or address, without a final dot."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0].rstrip(".") if ":" in host else host.rstrip(".")


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Guard:
    """The ASGI middleware around the gateway app: the pieces above, in their order."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: GatewayMetrics,
        body_caps: Mapping[str, int],
        max_buffered: int,
        body_timeout: float,
        routes: Sequence[BaseRoute],
        max_inflight: int,
        rate_limit: ClientBuckets | None = None,
        allowed_hosts: Sequence[str] = ("*",),
    ) -> None:
        self.app = app
        self.hosts = HostCheck(allowed_hosts)
        self.clients = ClientLimit(rate_limit, metrics)
        self.bodies = BodyBudget(body_caps, max_buffered, body_timeout)
        self.predictions = InflightLimit(max_inflight)
        self.log = RequestLog(metrics, RouteNames(routes))
        metrics.inflight.set_function(lambda: self.predictions.current)
        metrics.inflight_limit.set(max_inflight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request = RequestRecord.from_asgi(scope["headers"])
        token = CURRENT.set(request)
        send = with_response_headers(scope, send, request.request_id)
        try:
            with tracing.request_span(f"HTTP {scope.get('method', '')}", request):
                await self._answer(scope, receive, send, started, request)
        finally:
            CURRENT.reset(token)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, started: float, request: RequestRecord
    ) -> None:
        try:
            self.hosts.check(scope)
            self.clients.check(scope)
            async with self.bodies.read(scope, receive) as body:
                if body is None:
                    return  # the client went away: nothing to answer or count
                request.fields["body_bytes"] = len(body)
                with self.predictions.slot(scope):
                    replayed = _replay(body, receive)
                    status = await answer_unexpected_errors(self.app, scope, replayed, send)
        except GatewayError as refusal:
            await error_response(refusal)(scope, receive, send)
            status = refusal.status
        self.log.record(scope, status, started, request)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then the client's messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
