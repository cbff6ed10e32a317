"""Optional OpenTelemetry traces, for both tiers.

Off unless the standard variables ask for them: ``OTEL_TRACES_EXPORTER``
(``otlp`` or ``console``; ``none`` turns tracing off) or an OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and
``OTEL_SDK_DISABLED`` not ``true``. Then the ``otel`` extra (the SDK and the
OTLP exporter) must be installed; the SDK reads the rest of the ``OTEL_*``
variables itself (service name, resource attributes, sampler, protocol). While
off, no OpenTelemetry module is imported here and each span costs one check
of a module global, so the request path stays as it was.

Spans: the gateway's request (a child of the client's ``traceparent``, or a new
trace), ``body read``, ``fetch``, ``decode``, ``resize`` and ``Predict`` (the
gRPC call, whose context the model server receives as ``traceparent``); the
model server's call (a child of that), ``batch wait`` and ``run``. The access
lines (:mod:`clothing.logs`) then carry the trace ids of these spans.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from clothing.request_context import RequestRecord

log = logging.getLogger(__name__)
T = TypeVar("T")

_tracer: Any = None
_NOTHING = contextlib.nullcontext()
_TRUE = {"1", "true", "yes", "on"}


def configured(environ: Mapping[str, str]) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return bool(exporter) or any(environ.get(name) for name in endpoints)


def setup(service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Start tracing if the environment asks for it; whether it did."""
    if not configured(environ):
        return False
    try:
        from clothing import _otel

        provider = _otel.provider(service_name, environ)
    except (ImportError, ValueError) as error:
        log.warning("OTEL_* variables ask for traces, but %s: tracing stays off", error)
        return False
    use(provider)
    return True


def use(provider: Any) -> None:
    """Trace with ``provider`` (a TracerProvider), or stop tracing with ``None``."""
    global _tracer  # noqa: PLW0603 - one tracer per process, set once at start
    _tracer = None if provider is None else provider.get_tracer("clothing")


def enabled() -> bool:
    return _tracer is not None


def span(name: str) -> AbstractContextManager[Any]:
    """A child of the current span, for the block."""
    if _tracer is None:
        return _NOTHING
    return _tracer.start_as_current_span(name)


def request_span(name: str, record: RequestRecord) -> AbstractContextManager[Any]:
    """A request's own span, for the block: a child of the caller's ``traceparent`` when it
    sent one, else a new trace; ``record.traceparent`` becomes this span's, so logs and the
    next tier see it."""
    if _tracer is None:
        return _NOTHING
    return _request_span(name, record)


@contextlib.contextmanager
def _request_span(name: str, record: RequestRecord) -> Iterator[None]:
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    parent = propagator.extract({"traceparent": record.traceparent}) if record.offered else None
    with _tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER):
        record.traceparent = current_traceparent() or record.traceparent
        yield


def current_traceparent() -> str | None:
    """The current span's ``traceparent``, when tracing."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


# (name, start, end) of a stage, wall-clock nanoseconds: what another process measured.
StageTimes = list[tuple[str, int, int]]


@contextlib.contextmanager
def stage(name: str, times: StageTimes | None) -> Iterator[None]:
    """:func:`span` for the block, and its wall-clock times appended to ``times`` if given,
    for a process without the tracer (a decode worker) to hand back to one with it."""
    started = time.time_ns()
    with span(name):
        yield
    if times is not None:
        times.append((name, started, time.time_ns()))


def record_spans(times: StageTimes) -> None:
    """The stages another process measured, as finished children of the current span."""
    for name, start_ns, end_ns in times:
        record_span(name, start_ns, end_ns)


def record_span(name: str, start_ns: int, end_ns: int) -> None:
    """A finished span of the current one, from its wall-clock times (batch wait, run)."""
    if _tracer is not None:
        _tracer.start_span(name, start_time=start_ns).end(end_time=end_ns)


def carry_context(function: Callable[..., T]) -> Callable[..., T]:
    """``function`` run in this context, for a worker thread, so its spans nest here."""
    if _tracer is None:
        return function
    return functools.partial(contextvars.copy_context().run, function)
