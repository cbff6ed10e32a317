"""The alert and recording rules: valid for Prometheus, unit-tested, each with its runbook."""

from __future__ import annotations

import subprocess

import yaml

from tests.observability.shipped import ALERT_TESTS, ALERTS, alerts, doc_anchors, promtool

SEVERITIES = {"critical", "warning"}


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", ALERT_TESTS.name],
        cwd=ALERT_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_broken_expectation_fails_promtool(tmp_path) -> None:
    """Guards the test above: promtool compares labels and annotations exactly."""
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text())
    tests = ALERT_TESTS.read_text().replace("9.091% of requests", "9% of requests")
    (tmp_path / "alerts.test.yml").write_text(tests)
    result = subprocess.run(
        [promtool(), "test", "rules", "alerts.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0


def test_every_alert_has_severity_summary_and_runbook() -> None:
    anchors = doc_anchors()
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        assert alert["annotations"]["summary"].strip(), name
        page, _, anchor = alert["annotations"]["runbook_url"].partition("#")
        assert page == "docs/observability.md", name
        assert anchor == name.lower(), name
        assert anchor in anchors, f"docs/observability.md has no heading {name}"


def test_every_alert_is_unit_tested_firing() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {alert["alert"] for alert in alerts()} <= fired


def test_the_issue_s_alerts_are_all_there() -> None:
    names = {alert["alert"] for alert in alerts()}
    assert {
        "GatewayErrorRatioHigh",
        "ModelServerErrorRatioHigh",
        "GatewayLatencyHigh",
        "ModelServerLatencyHigh",
        "GatewaySaturated",
        "GatewayThrottling",
        "ModelServerSaturated",
        "ModelNotAvailable",
        "ModelVersionFlapping",
        "BatchQueueGrowing",
        "MemoryNearLimit",
        "ScrapeTargetDown",
    } <= names
