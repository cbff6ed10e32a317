"""Prometheus metrics of one gateway app, in a registry of its own.

A registry per app (not the global one) lets tests build many apps in one
process and keeps ``/metrics`` to what this gateway measured, plus the
process's own metrics (:mod:`clothing.process_metrics`). The dashboard and the
alerts in ``deploy/observability`` read these names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from clothing.process_metrics import add_process_collectors

STAGES = ("fetch", "preprocess", "inference", "total")
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gateway_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "gateway_request_duration_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "gateway_stage_duration_seconds",
            "Time spent per pipeline stage (fetch, preprocess, inference, total).",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.fetched_bytes = Counter(
            "gateway_fetched_bytes",
            "Bytes of images downloaded from image URLs.",
            registry=self.registry,
        )
        self.refused_addresses = Counter(
            "gateway_refused_addresses",
            "Image URLs refused by the address policy (scheme, host or resolved address).",
            registry=self.registry,
        )
        self.images = Counter(
            "gateway_images",
            "Images classified or failed, by outcome (ok or the error code).",
            ["outcome"],
            registry=self.registry,
        )
        self.image_failures = Counter(
            "gateway_image_failures",
            "Images that could not be classified, by stage (fetch, decode) and kind (the "
            "error code).",
            ["stage", "kind"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "gateway_refusals",
            "Requests refused (answered 4xx), by reason (the error code: overloaded, "
            "too_large, body_timeout, not_an_image, ...).",
            ["reason"],
            registry=self.registry,
        )
        self.inflight = Gauge(
            "gateway_inflight_requests",
            "Predictions (/predict, /predict/batch) being handled now; the autoscaler's signal.",
            registry=self.registry,
        )
        self.inflight_limit = Gauge(
            "gateway_inflight_limit",
            "Predictions handled at once at most (--max-inflight); past it a request gets 429.",
            registry=self.registry,
        )
        self.model_version_changes = Counter(
            "gateway_model_version_changes",
            "Times the model server started answering with another model version.",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "gateway_rate_limited_requests",
            "Requests refused with 429 because their client was over --rate-limit.",
            registry=self.registry,
        )
        for stage in STAGES:
            self.stage_seconds.labels(stage=stage)
        add_process_collectors(self.registry)

    def observe_stage(self, stage: str, milliseconds: float) -> None:
        self.stage_seconds.labels(stage=stage).observe(milliseconds / 1000.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
