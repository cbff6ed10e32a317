"""A strict run (CI) ends in failure if any test was skipped: see tests/environment.py."""

from __future__ import annotations

import pytest

from tests.environment import STRICT_VARIABLE, strict

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if strict() and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if strict() and _skipped:
        terminalreporter.write_line(
            f"strict run ({STRICT_VARIABLE} or CI): {len(_skipped)} skipped test(s) fail the run",
            red=True,
        )
