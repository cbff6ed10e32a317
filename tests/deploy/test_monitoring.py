"""The monitoring component: PodMonitors that find both tiers' metrics, the shipped rules
and dashboard for kube-prometheus-stack, and the adapter reading the same series."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests import environment
from tests.deploy.kustomize import Document, identity, render
from tests.deploy.manifests import K8S, KUBERNETES_VERSION, NAMESPACE, container, find, named_port
from tests.environment import ROOT
from tests.observability.shipped import ALERTS, DASHBOARD

COMPONENT = K8S / "components" / "monitoring"
ADAPTER_VALUES = K8S / "components" / "custom-metrics" / "prometheus-adapter-values.yaml"


def _with_monitoring(tmp_path: Path) -> Path:
    """An overlay as docs/deploy.md has you write it: kind's, plus the component."""
    overlay = tmp_path / "monitored"
    overlay.mkdir()
    config = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "overlays" / "kind", overlay)],
        "components": [os.path.relpath(COMPONENT, overlay)],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(config))
    return overlay


@pytest.fixture
def docs(tmp_path: Path) -> list[Document]:
    return render(_with_monitoring(tmp_path))


def test_generated_copies_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_monitoring.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_component_carries_the_shipped_rules_and_dashboard(docs: list[Document]) -> None:
    rule = find(docs, "PrometheusRule", "clothing-classifier")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    dashboard = find(docs, "ConfigMap", "clothing-classifier-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(DASHBOARD.read_text())
    assert json.loads(dashboard["data"]["clothing-classifier.json"]) == shipped
    kubernetes_validate.validate(dashboard, KUBERNETES_VERSION, strict=True)
    for kind in ("PrometheusRule", "PodMonitor", "ConfigMap"):
        for doc in (d for d in docs if d["kind"] == kind):
            assert doc["metadata"]["namespace"] == NAMESPACE, identity(doc)


@pytest.mark.parametrize("tier", ["gateway", "model-server"])
def test_a_pod_monitor_scrapes_each_tier_where_it_serves_metrics(
    docs: list[Document], tier: str
) -> None:
    monitor = find(docs, "PodMonitor", tier)
    deployment = find(docs, "Deployment", tier)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(pod_labels.get(key) == value for key, value in selector.items())
    # The job label is the tier's name, which the rules and the dashboard select.
    assert pod_labels[monitor["spec"]["jobLabel"]] == tier
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    # The port the pods' annotations name (where the servers serve /metrics).
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    port = named_port(container(deployment), endpoint["port"])
    assert port == int(annotations["prometheus.io/port"])


def test_the_adapter_reads_a_series_the_pod_monitors_scrape(docs: list[Document]) -> None:
    from clothing.gateway.metrics import GatewayMetrics
    from clothing.model_server.metrics import ServerMetrics

    exported = {
        "model-server": {family.name for family in ServerMetrics().registry.collect()},
        "gateway": {family.name for family in GatewayMetrics().registry.collect()},
    }
    values = yaml.safe_load(ADAPTER_VALUES.read_text())
    for rule in values["rules"]["custom"]:
        metric = rule["seriesQuery"].split("{", 1)[0]
        # One tier's series, which that tier's PodMonitor scrapes.
        (tier,) = [tier for tier, names in exported.items() if metric in names]
        assert find(docs, "PodMonitor", tier)
        # The operator labels every scraped series with its namespace and pod.
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


def test_renderer_matches_kubectl_kustomize(tmp_path: Path) -> None:
    kubectl = environment.kubectl()
    overlay = _with_monitoring(tmp_path)
    output = subprocess.run(
        [kubectl, "kustomize", str(overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    expected = {identity(doc): doc for doc in yaml.safe_load_all(output) if doc}
    actual = {identity(doc): doc for doc in render(overlay)}
    assert actual == expected
