"""Prometheus metrics of the model server, in a registry of its own.

Requests and latency carry model, version, signature and transport labels
(gRPC included), batching exposes its batch sizes and queue depth, and the
autoscaler reads ``model_server_inflight_requests`` and
``model_server_queue_depth``. The limits those are measured against are
gauges too, so alerts compare with the running configuration rather than a
copied number; the process's own metrics come from
:mod:`clothing.process_metrics`. The dashboard and the alerts in
``deploy/observability`` read these names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from clothing.process_metrics import add_process_collectors

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["model", "version", "signature", "transport"]
        self.requests = Counter(
            "model_server_requests",
            "Predict requests by outcome (gRPC status name).",
            [*labels, "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "model_server_request_latency_seconds",
            "Predict latency, decoding to encoding, in seconds.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.runtime_latency = Histogram(
            "model_server_runtime_latency_seconds",
            "Time spent in the runtime per call (one call per batch when batching), in seconds.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queuing_latency = Histogram(
            "model_server_queuing_latency_seconds",
            "Time a request waits in the batching queue before its batch runs, in seconds.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "model_server_batch_size",
            "Rows per runtime call when dynamic batching is on.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "model_server_queue_depth",
            "Rows waiting in the batching queue.",
            ["model"],
            registry=self.registry,
        )
        self.inflight = Gauge(
            "model_server_inflight_requests",
            "Requests being served now.",
            ["transport"],
            registry=self.registry,
        )
        self.loads = Counter(
            "model_server_model_loads",
            "Model version loads by result (success, failure).",
            ["model", "result"],
            registry=self.registry,
        )
        self.unloads = Counter(
            "model_server_model_unloads",
            "Model versions unloaded.",
            ["model"],
            registry=self.registry,
        )
        self.available_versions = Gauge(
            "model_server_available_versions",
            "Versions of a model that are AVAILABLE now.",
            ["model"],
            registry=self.registry,
        )
        self.inflight_limit = Gauge(
            "model_server_inflight_limit",
            "Requests served at once at most, per transport (--max_concurrent_rpcs, "
            "--rest_max_concurrent_requests); 0: no limit.",
            ["transport"],
            registry=self.registry,
        )
        self.queue_capacity = Gauge(
            "model_server_queue_capacity",
            "Rows the batching queue holds at most (max_enqueued_batches x max_batch_size).",
            ["model"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "model_server_refusals",
            "Requests refused before a model saw them, by transport and reason.",
            ["transport", "reason"],
            registry=self.registry,
        )
        self.served_version = Gauge(
            "model_server_model_version",
            "The version a request naming no version gets (the newest AVAILABLE); 0: none.",
            ["model"],
            registry=self.registry,
        )
        for transport in ("grpc", "rest"):
            self.inflight.labels(transport=transport).set(0)
        add_process_collectors(self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
