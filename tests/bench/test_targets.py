from typing import Any

from clothing.benchmarks.report import to_markdown
from clothing.benchmarks.summary import summary_lines
from clothing.benchmarks.targets import judge
from tests.bench.rows import row, sample_results


def _outcomes(results: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {v["target"]: (v["outcome"], v["measured"]) for v in judge(results)}


def _level2(size: str, payload: str, **ours: Any) -> list[dict[str, Any]]:
    return [
        row(2, "ours", 16, 100.0, size=size, payload=payload, **ours),
        row(2, "baseline", 16, 60.0, size=size, payload=payload, p99_ms=300.0),
        row(2, "litserve", 16, 70.0, size=size, payload=payload, p99_ms=250.0),
    ]


def test_a_ratio_is_met_missed_or_split_by_its_rounds() -> None:
    rows = [
        row(
            1,
            "model-server+batching",
            16,
            90,
            ratio_to_ceiling=0.93,
            ratio_to_ceiling_range=[0.91, 0.95],
        ),
        row(
            1,
            "model-server+batching",
            32,
            90,
            ratio_to_ceiling=0.92,
            ratio_to_ceiling_range=[0.85, 0.97],
        ),
        row(
            1,
            "model-server+batching",
            64,
            90,
            ratio_to_ceiling=0.85,
            ratio_to_ceiling_range=[0.80, 0.88],
        ),
        row(1, "model-server+batching", 4, 90, ratio_to_ceiling=0.50),  # below c=16: not judged
        row(1, "model-server", 64, 90, ratio_to_ceiling=0.50),  # no batching: not judged
    ]
    outcomes = _outcomes({"rows": rows})
    assert outcomes == {
        "level 1, batching, c=16: ≥ 0.9 × ceiling": ("met", "0.93 (rounds 0.91–0.95)"),
        "level 1, batching, c=32: ≥ 0.9 × ceiling": ("split", "0.92 (rounds 0.85–0.97)"),
        "level 1, batching, c=64: ≥ 0.9 × ceiling": ("missed", "0.85 (rounds 0.80–0.88)"),
    }


def test_a_ratio_without_rounds_is_judged_by_its_pooled_value() -> None:
    rows = [row(1, "model-server+batching", 16, 90, ratio_to_ceiling=0.89)]
    assert _outcomes({"rows": rows}) == {
        "level 1, batching, c=16: ≥ 0.9 × ceiling": ("missed", "0.89"),
    }


def test_batching_at_concurrency_one_may_not_add_latency() -> None:
    plain = row(1, "model-server", 1, 80, p50_ms=12.0)
    within = row(1, "model-server+batching", 1, 80, p50_ms=13.1)
    target = "level 1, c=1: batching adds no latency (p50 within 10% of no batching)"
    assert _outcomes({"rows": [plain, within]})[target][0] == "met"
    slower = row(1, "model-server+batching", 1, 80, p50_ms=13.3)
    assert _outcomes({"rows": [plain, slower]})[target] == (
        "missed",
        "p50 13.30 ms with batching, 12.00 ms without",
    )


def test_ours_is_judged_against_the_ceiling_the_baseline_its_p99_and_errors() -> None:
    rows = _level2("phone", "url", vs_ceiling=0.9, vs_baseline=1.67, p99_ms=240.0)
    rows += _level2("phone", "b64", vs_ceiling=0.8, vs_baseline=1.1, p99_ms=320.0, errors=1)
    rows += [row(2, "ours", 4, 10.0, size="phone", payload="b64", vs_baseline=0.1)]
    outcomes = _outcomes({"rows": rows})
    assert list(outcomes) == [
        "phone, b64, c=16: ≥ 0.85 × the photo-in ceiling",
        "phone, b64, c=16: ≥ 1.2 × the baseline",
        "phone, b64, c=16: p99 no worse than the baseline's",
        "phone, b64, c=16: no failed request",
        "phone, url, c=16: ≥ 0.85 × the photo-in ceiling",
        "phone, url, c=16: ≥ 1.2 × the baseline",
        "phone, url, c=16: p99 no worse than the baseline's",
        "phone, url, c=16: no failed request",
    ]
    assert outcomes["phone, b64, c=16: ≥ 0.85 × the photo-in ceiling"] == ("missed", "0.80")
    assert outcomes["phone, b64, c=16: ≥ 1.2 × the baseline"][0] == "missed"
    assert outcomes["phone, b64, c=16: p99 no worse than the baseline's"] == (
        "missed",
        "320 ms against 300 ms",
    )
    assert outcomes["phone, b64, c=16: no failed request"] == ("missed", "1 failed")
    assert {outcome for key, (outcome, _) in outcomes.items() if "url" in key} == {"met"}


def test_both_photo_sizes_have_the_same_targets() -> None:
    rows = _level2("dataset", "b64", vs_ceiling=0.86, vs_baseline=1.25, p99_ms=200.0)
    assert _outcomes({"rows": rows}) == {
        "dataset, b64, c=16: ≥ 0.85 × the photo-in ceiling": ("met", "0.86"),
        "dataset, b64, c=16: ≥ 1.2 × the baseline": ("met", "1.25"),
        "dataset, b64, c=16: p99 no worse than the baseline's": ("met", "200 ms against 300 ms"),
        "dataset, b64, c=16: no failed request": ("met", "0 failed"),
    }


def test_unmeasured_cells_are_not_judged() -> None:
    rows = [row(2, "ours", 16, 50.0, size="phone", payload="b64")]  # no ratio, no baseline
    assert [verdict["target"] for verdict in judge({"rows": rows})] == [
        "phone, b64, c=16: no failed request"
    ]


def test_preprocessing_speedup_and_where_verdicts_are_shown() -> None:
    results = sample_results()
    results["targets"] = judge(results)
    target = "preprocessing, phone-size: ≥ 4 × faster than plain Pillow"
    assert _outcomes(results)[target] == ("met", "5.00× (10.00 against 50.00 ms)")
    markdown = to_markdown(results)
    assert "## Targets" in markdown
    assert f"| {target} | 5.00× (10.00 against 50.00 ms) | met |" in markdown
    assert f"  met    {target}: 5.00× (10.00 against 50.00 ms)" in summary_lines(results)
