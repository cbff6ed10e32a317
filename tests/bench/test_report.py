import json
from pathlib import Path

import pytest
from PIL import Image

from clothing.benchmarks.interleave import round_ratio_range
from clothing.benchmarks.report import to_markdown, write_results
from clothing.benchmarks.summary import summary_lines
from tests.bench.rows import sample_results


def test_ratios_only_where_both_sides_measured() -> None:
    rows = sample_results()["rows"]
    ours = {row["concurrency"]: row for row in rows if row["system"] == "ours"}
    assert ours[4]["vs_baseline"] == 1.5
    assert ours[1]["vs_baseline"] == 1.5
    assert "vs_framework" not in ours[1]  # litserve has no c=1 row
    assert "vs_framework" not in ours[4]  # zero images/s: no ratio


def test_each_round_gives_a_paired_ratio_and_their_spread_is_kept() -> None:
    ours = {row["concurrency"]: row for row in sample_results()["rows"] if row["system"] == "ours"}
    assert ours[4]["vs_baseline_range"] == [1.1, pytest.approx(2.167, abs=1e-3)]
    assert ours[1]["vs_baseline_range"] is None  # no blocks recorded


def test_round_ratio_range_needs_matching_rounds() -> None:
    assert round_ratio_range([10.0, 12.0], [10.0, 8.0]) == [1.0, 1.5]
    assert round_ratio_range([10.0], [10.0]) is None  # one round: no spread
    assert round_ratio_range([10.0, 12.0], [10.0]) is None
    assert round_ratio_range([10.0, 12.0], [10.0, 0.0]) is None


def test_markdown_has_every_section() -> None:
    text = to_markdown(sample_results())
    assert "Ceiling (in-process ONNX Runtime, best batch 8): **100.0 images/s**" in text
    assert "| model-server+batching | 4 | 90.0 |" in text
    assert "### phone-size photos, b64 payload" in text
    assert "| ours | 4 | 60.0 | 10.0 | 20.0 | 0.60 (0.50–0.72) | 1.50 (1.10–2.17) | – | 0 |" in text
    assert "| ours | 1 | 30.0 | 10.0 | 20.0 | – | 1.50 | – | 0 |" in text
    assert "| baseline | 4 | 40.0 | 10.0 | 20.0 | 0.40 (0.33–0.46) | – | – | 0 |" in text
    assert "| 0.90 (0.85–0.95) | 0 |" in text
    assert "| phone | 1500×2000 | 10.00 | 50.00 | 5.00 |" in text


def test_write_results_writes_json_markdown_and_pngs(tmp_path: Path) -> None:
    results = sample_results()
    results["rows"][0]["p99_ms"] = float("nan")
    written = write_results(results, tmp_path)
    stored = json.loads((tmp_path / "20250101T000000Z.json").read_text())
    assert stored["rows"][0]["p99_ms"] is None  # NaN is not JSON
    assert stored["files"] == written["files"]
    assert (tmp_path / "20250101T000000Z.md").read_text().startswith("# Benchmark run")
    assert sorted(written["files"]["plots"]) == [
        "20250101T000000Z-level1.png",
        "20250101T000000Z-level2-phone-b64.png",
    ]
    for name in written["files"]["plots"]:
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG"
            assert image.width > 500


def test_summary_prints_ratios_per_concurrency() -> None:
    lines = summary_lines(sample_results())
    assert any("c=4" in line and "× baseline 1.50 (1.10–2.17)" in line for line in lines)
    assert any("c=1" in line and "× baseline 1.50 " in line for line in lines)
    assert any("× ceiling 0.90 (0.85–0.95)" in line for line in lines)
