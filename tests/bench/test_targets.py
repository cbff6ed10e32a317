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


def test_phone_photos_are_judged_on_throughput_and_p99_at_concurrency_16() -> None:
    rows = _level2("phone", "url", vs_baseline=1.67, vs_framework=1.43, p99_ms=240.0)
    rows += _level2("phone", "b64", vs_baseline=1.45, vs_framework=1.2, p99_ms=260.0)
    rows += [row(2, "ours", 4, 10.0, size="phone", payload="b64", vs_baseline=0.1)]
    outcomes = _outcomes({"rows": rows})
    assert list(outcomes) == [
        "phone, b64, c=16: ≥ 1.5 × baseline",
        "phone, b64, c=16: ≥ 1.0 × litserve",
        "phone, b64, c=16: p99 no worse than the baseline and litserve",
        "phone, url, c=16: ≥ 1.5 × baseline",
        "phone, url, c=16: ≥ 1.0 × litserve",
        "phone, url, c=16: p99 no worse than the baseline and litserve",
    ]
    assert outcomes["phone, b64, c=16: ≥ 1.5 × baseline"][0] == "missed"
    assert outcomes["phone, b64, c=16: p99 no worse than the baseline and litserve"] == (
        "missed",
        "260 ms against 300 / 250 ms",
    )
    assert outcomes["phone, url, c=16: ≥ 1.5 × baseline"][0] == "met"
    assert outcomes["phone, url, c=16: p99 no worse than the baseline and litserve"][0] == "met"


def test_dataset_photos_have_no_p99_target() -> None:
    rows = _level2("dataset", "b64", vs_baseline=0.95, vs_framework=1.05)
    assert _outcomes({"rows": rows}) == {
        "dataset, b64, c=16: ≥ 0.9 × baseline": ("met", "0.95"),
        "dataset, b64, c=16: ≥ 1.0 × litserve": ("met", "1.05"),
    }


def test_unmeasured_cells_are_not_judged() -> None:
    rows = [row(2, "ours", 16, 50.0, size="phone", payload="b64")]  # no baseline, no framework
    assert judge({"rows": rows}) == []


def test_preprocessing_speedup_and_where_verdicts_are_shown() -> None:
    results = sample_results()
    results["targets"] = judge(results)
    target = "preprocessing, phone-size: ≥ 4 × faster than plain Pillow"
    assert _outcomes(results)[target] == ("met", "5.00× (10.00 against 50.00 ms)")
    markdown = to_markdown(results)
    assert "## Targets" in markdown
    assert f"| {target} | 5.00× (10.00 against 50.00 ms) | met |" in markdown
    assert f"  met    {target}: 5.00× (10.00 against 50.00 ms)" in summary_lines(results)
