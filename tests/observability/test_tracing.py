"""OpenTelemetry spans across both tiers when tracing is on, and nothing of it when off.

Both tiers run in this process (the model server on loopback gRPC, the gateway app
behind httpx) so one in-memory exporter sees every span; the SDK comes from the
dev extra (the ``otel`` extra adds the OTLP exporter).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clothing import tracing
from clothing.gateway.settings import GatewaySettings
from clothing.model_server.config import BatchingConfig, ModelConfig, ServerConfig
from clothing.model_server.server import ModelServer
from tests.fixtures import build_test_model
from tests.gateway.conftest import gateway_client
from tests.images import jpeg

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.use(provider)
    try:
        yield spans
    finally:
        tracing.use(None)
        provider.shutdown()


async def test_one_trace_from_the_client_through_both_tiers(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    build_test_model(tmp_path / "m" / "1")
    config = ServerConfig(
        models=(ModelConfig(name="clothing-model", base_path=tmp_path / "m"),),
        host="127.0.0.1",
        port=0,
        rest_api_port=0,
        batching=BatchingConfig(max_batch_size=4, num_batch_threads=1),
    )
    server = ModelServer(config)
    await server.start()
    try:
        settings = GatewaySettings(tf_serving_host=f"127.0.0.1:{server.grpc_port}", metrics_port=0)
        async with gateway_client(settings) as client:
            answer = await client.post(
                "/predict",
                files={"file": ("a.jpg", jpeg(), "image/jpeg")},
                headers={"traceparent": TRACEPARENT},
            )
            assert answer.status_code == 200, answer.text
    finally:
        await server.stop()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    for name in (
        "HTTP POST",
        "body read",
        "decode",
        "resize",
        "Predict",
        "gRPC Predict",
        "batch wait",
        "run",
    ):
        assert name in spans, f"no {name} span in {sorted(spans)}"
        assert format(spans[name].context.trace_id, "032x") == TRACE_ID, name
    # The model server's span is the child of the gateway's Predict call.
    assert _parent(spans["gRPC Predict"]) == spans["Predict"].context.span_id
    assert _parent(spans["decode"]) == spans["HTTP POST"].context.span_id


def _parent(span: ReadableSpan) -> int:
    assert span.parent is not None, span.name
    return span.parent.span_id


def test_off_unless_configured_and_nothing_of_the_sdk_is_imported() -> None:
    assert not tracing.configured({})
    assert not tracing.configured({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.configured(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_SDK_DISABLED": "true"}
    )
    assert tracing.configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert tracing.configured({"OTEL_TRACES_EXPORTER": "console"})
    # FastAPI itself imports OpenTelemetry's API; the tiers add none of the SDK.
    code = (
        "import sys\n"
        "from clothing import tracing\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')]\n"
        "from clothing.gateway.app import create_app\n"
        "from clothing.gateway.settings import GatewaySettings\n"
        "from clothing.model_server.server import ModelServer\n"
        "assert not tracing.setup('test')\n"
        "create_app(GatewaySettings())\n"
        "print([m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.exporter', 'clothing._otel'))])\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    shown = subprocess.run(
        [sys.executable, "-c", code],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert shown.strip() == "[]"


def test_configured_tracing_starts_and_a_bad_exporter_is_reported() -> None:
    code = (
        "from clothing import tracing\n"
        "assert not tracing.setup('test', {'OTEL_TRACES_EXPORTER': 'zipkin-v0'})\n"
        "assert not tracing.enabled()\n"
        "assert tracing.setup('test', {'OTEL_TRACES_EXPORTER': 'console'})\n"
        "assert tracing.enabled()\n"
        "with tracing.span('x'):\n"
        "    assert tracing.current_traceparent().startswith('00-')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "OTEL_TRACES_EXPORTER=zipkin-v0 is not supported" in result.stderr
