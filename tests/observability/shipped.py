"""The observability files the project ships, and how the tests read them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

from tests.environment import ROOT, tool

OBSERVABILITY = ROOT / "deploy" / "observability"
ALERTS = OBSERVABILITY / "prometheus" / "alerts.yml"
ALERT_TESTS = OBSERVABILITY / "prometheus" / "alerts.test.yml"
PROMETHEUS_CONFIG = OBSERVABILITY / "prometheus" / "prometheus.yml"
DASHBOARD = OBSERVABILITY / "grafana" / "clothing-classifier.json"
DOCS = ROOT / "docs" / "observability.md"
VARIABLES = ("namespace", "job", "pod")

# What a Grafana variable set to All stands for (the dashboard's allValue).
ALL = ".*"


def promtool() -> str:
    return tool("promtool", "Debian's prometheus package: apt-get install prometheus")


def prometheus() -> str:
    return tool("prometheus", "Debian's prometheus package: apt-get install prometheus")


def rule_groups() -> list[dict[str, Any]]:
    return list(yaml.safe_load(ALERTS.read_text())["groups"])


def rules() -> Iterator[dict[str, Any]]:
    for group in rule_groups():
        yield from group["rules"]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title and refId, PromQL as written) of every target."""
    return [
        (f"{panel['title']} {target['refId']}", target["expr"])
        for panel in panels()
        for target in panel.get("targets", [])
    ]


def with_all(expr: str, rate_interval: str) -> str:
    """The query Grafana sends with every variable set to All."""
    for name in VARIABLES:
        expr = expr.replace(f"${name}", ALL)
    return expr.replace("$__rate_interval", rate_interval)


_LABEL_VALUES = re.compile(r"label_values\((?P<match>.+),\s*(?P<label>\w+)\)")


def variable_queries() -> list[tuple[str, str, str]]:
    """(variable, series selector, label) of each ``label_values`` variable."""
    found = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = _LABEL_VALUES.fullmatch(variable["definition"])
        assert match, variable["definition"]
        found.append((variable["name"], match["match"], match["label"]))
    return found


def doc_anchors() -> set[str]:
    """The anchors of docs/observability.md's headings, as GitHub makes them."""
    anchors = set()
    for line in DOCS.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors
