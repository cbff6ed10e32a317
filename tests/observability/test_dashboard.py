"""The Grafana dashboard: valid against Grafana's dashboard schema, and built on the variables.

Grafana cannot be installed here, and no PyPI package ships its dashboard JSON
Schema: ``grafana_dashboard.schema.json`` beside this file is a transcription of
Grafana's dashboard kind (schema v0: every field it declares as required, with
its types and bounds). That every query returns data from real servers is
checked in test_live_prometheus.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.observability.shipped import VARIABLES, dashboard, dashboard_queries, panels

SCHEMA = json.loads((Path(__file__).parent / "grafana_dashboard.schema.json").read_text())


def test_dashboard_matches_grafana_s_schema() -> None:
    jsonschema.validate(dashboard(), SCHEMA, cls=jsonschema.Draft202012Validator)


def test_schema_refuses_a_panel_without_a_position() -> None:
    broken = dashboard()
    del broken["panels"][1]["gridPos"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_every_query_selects_by_the_three_variables() -> None:
    for where, expr in dashboard_queries():
        for name in VARIABLES:
            assert f'{name}=~"${name}"' in expr, f"{where}: {expr}"


def test_variables_offer_all_as_a_regex() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert set(VARIABLES) <= set(variables)
    for name in VARIABLES:
        variable = variables[name]
        assert variable["includeAll"], name
        assert variable["multi"], name
        assert variable["allValue"] == ".*", name


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    placed = list(panels())
    ids = [panel["id"] for panel in placed]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in placed:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_the_issue_s_panels_are_all_there() -> None:
    queries = " ".join(expr for _, expr in dashboard_queries())
    for metric in (
        "gateway_requests_total",
        "model_server_requests_total",
        "gateway_stage_duration_seconds_bucket",
        "model_server_request_latency_seconds_bucket",
        "gateway_inflight_requests",
        "model_server_inflight_requests",
        "gateway_refusals_total",
        "model_server_batch_size_bucket",
        "model_server_queuing_latency_seconds_bucket",
        "model_server_model_version",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert metric in queries, metric
