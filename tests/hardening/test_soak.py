"""The short soak: ``scripts/soak.py`` for ~35 s through gateway + model server processes.

The long run (5 minutes) is the same script: ``python scripts/soak.py --duration 300``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


@pytest.mark.slow
def test_short_soak_at_concurrency_16(tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    command = [
        sys.executable,
        str(SCRIPT),
        "--duration=35",
        "--warmup=10",
        "--concurrency=16",
        f"--json={report_path}",
        "--verbose",
    ]
    finished = subprocess.run(command, check=False, capture_output=True, text=True, timeout=240)
    print(finished.stdout)
    report = json.loads(report_path.read_text())
    assert report["sent"] > 100, report
    assert report["failed"] == 0, report
    for process in report["processes"]:
        base, final = process["baseline"], process["final"]
        assert final["rss_kib"] < 1.10 * base["rss_kib"], process
        assert process["exit_code"] == 0, process
    assert report["passed"], (report["problems"], finished.stderr[-4000:])
    assert finished.returncode == 0
