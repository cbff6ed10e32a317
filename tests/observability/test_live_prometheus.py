"""Both tiers under about ten seconds of mixed traffic, scraped every second by a real
Prometheus (Debian's package): every dashboard query returns data, every rule
evaluates, and stopping the model server fires ScrapeTargetDown.

Traffic: good uploads and batches, an upload that is not an image, a URL the
address policy refuses (a fetch failure), a body over the cap, batches larger
than the model server's batching queue (RESOURCE_EXHAUSTED, a 503), and more
concurrency than the gateway's in-flight limit (429s).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.images import jpeg
from tests.observability.shipped import dashboard_queries, rules, variable_queries, with_all
from tests.observability.stack import Prometheus, both_tiers, run_prometheus, wait_for

pytestmark = pytest.mark.slow

TRAFFIC_SECONDS = 10.0
CLIENTS = 5
# Long enough to hold the whole run's traffic; what $__rate_interval would be in Grafana.
RATE_INTERVAL = "30s"


async def _client_loop(gateway: str, until: float) -> dict[int, int]:
    statuses: dict[int, int] = {}
    image = jpeg()
    async with httpx.AsyncClient(base_url=gateway, timeout=10.0) as client:
        while time.monotonic() < until:
            answers = [
                await client.post("/predict", files={"file": ("a.jpg", image, "image/jpeg")}),
                await client.post(
                    "/predict", files={"file": ("a.jpg", b"plain text", "text/plain")}
                ),
                await client.post("/predict", json={"url": "http://127.0.0.1:9/photo.jpg"}),
                await client.post("/predict", content=b"x" * 200_000),
                await client.post(
                    "/predict/batch",
                    files=[("files", ("a.jpg", image, "image/jpeg"))] * 2,
                ),
                await client.post(
                    "/predict/batch",
                    files=[("files", ("a.jpg", image, "image/jpeg"))] * 3,
                ),
            ]
            for answer in answers:
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
    return statuses


async def _traffic(gateway: str) -> dict[int, int]:
    until = time.monotonic() + TRAFFIC_SECONDS
    results = await asyncio.gather(*(_client_loop(gateway, until) for _ in range(CLIENTS)))
    total: dict[int, int] = {}
    for result in results:
        for status, count in result.items():
            total[status] = total.get(status, 0) + count
    return total


def _evaluated_everything(prometheus: Prometheus) -> bool:
    groups = prometheus.get("/api/v1/rules")["groups"]
    return all(
        rule["lastEvaluation"] and not rule["lastEvaluation"].startswith("0001")
        for group in groups
        for rule in group["rules"]
    )


def test_dashboard_and_alerts_against_real_servers(tmp_path: Path) -> None:
    with (
        both_tiers(
            tmp_path / "clothing-model",
            model_server_args=(
                "--enable_batching",
                "--max_batch_size=2",
                "--max_enqueued_batches=1",
                "--num_batch_threads=1",
                "--batch_timeout_micros=2000",
            ),
            gateway_args=("--max-inflight=2", "--max-image-bytes=20000"),
        ) as stack,
        run_prometheus(stack) as prometheus,
    ):
        statuses = asyncio.run(_traffic(stack.gateway.url))
        # Every kind of answer the panels show happened.
        assert {200, 400, 403, 413, 429, 503} <= set(statuses), statuses
        time.sleep(2.0)  # one more scrape and rule evaluation after the last request
        wait_for(lambda: _evaluated_everything(prometheus), 10.0, "every rule evaluated")

        for where, expr in dashboard_queries():
            result = prometheus.query(with_all(expr, RATE_INTERVAL))["result"]
            assert result, f"{where}: no data for {expr}"
        for variable, selector, label in variable_queries():
            values = prometheus.get(
                f"/api/v1/label/{label}/values", **{"match[]": with_all(selector, "")}
            )
            assert values, f"variable {variable}: no values"
        for rule in rules():
            prometheus.query(rule["expr"])
        for group in prometheus.get("/api/v1/rules")["groups"]:
            for rule in group["rules"]:
                assert rule["health"] == "ok", rule

        # A real fault: the model server goes away and its scrape target with it.
        stack.model_server.stop()

        def target_down_firing() -> bool:
            return any(
                alert["labels"]["alertname"] == "ScrapeTargetDown"
                and alert["labels"]["job"] == "model-server"
                and alert["state"] == "firing"
                for alert in prometheus.get("/api/v1/alerts")["alerts"]
            )

        wait_for(target_down_firing, 20.0, "ScrapeTargetDown firing for the model server")
