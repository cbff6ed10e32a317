"""The ratios printed at the end of a run, one line per concurrency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clothing.benchmarks.report import fmt_ratio
from clothing.benchmarks.systems import OURS_SERVER_FLAGS


def summary_lines(results: dict[str, Any]) -> list[str]:
    rows = results["rows"]
    model = results.get("model") or {}
    lines = [f"Model: {model.get('path')} ({model.get('precision', 'float32')})"] if model else []
    level1 = results.get("level1")
    if level1:
        lines.append(
            f"Level 1 ceiling: {level1['ceiling']['images_per_s']:.1f} images/s; "
            f"bare session.run p50 {level1['bare_run']['p50_ms']:.2f} ms"
        )
        for system, over in (level1.get("c1_p50_over_bare_ms") or {}).items():
            lines.append(f"  {system} c=1 p50 minus bare session.run p50: {over:+.2f} ms")
        for row in rows:
            if row["level"] == 1:
                lines.append(
                    f"  {row['system']:<22} c={row['concurrency']:<3} "
                    f"{row['images_per_s']:8.1f} images/s  p50 {row['p50_ms']:7.2f} ms  "
                    f"p99 {row['p99_ms']:7.2f} ms  × ceiling {fmt_ratio(row, 'ratio_to_ceiling')}"
                )
    ours = [row for row in rows if row["level"] == 2 and row["system"] in OURS_SERVER_FLAGS]
    if ours:
        lines.append(
            "Level 2, ours against the photo-in ceiling, the baseline and the framework (images/s):"
        )
        for row in ours:
            lines.append(
                f"  {row['system']:<16} {row['size']:<7} {row['payload']:<3} "
                f"c={row['concurrency']:<3} "
                f"{row['images_per_s']:8.1f} images/s  p99 {row['p99_ms']:8.1f} ms  "
                f"× ceiling {fmt_ratio(row, 'vs_ceiling')}  "
                f"× baseline {fmt_ratio(row, 'vs_baseline')}  "
                f"× framework {fmt_ratio(row, 'vs_framework')}"
            )
    for size, item in (results.get("preprocessing") or {}).items():
        lines.append(
            f"Preprocessing {size}: gateway {item['gateway_ms']:.2f} ms, plain Pillow "
            f"{item['plain_pillow_ms']:.2f} ms, {item['speedup']:.2f}× faster"
        )
    for size, item in (results.get("gateway_overhead") or {}).items():
        lines.append(
            f"Gateway overhead {size} (paired, c=1): {item['overhead_ms']:+.2f} ms "
            f"(gateway p50 {item['gateway_p50_ms']:.2f} ms, "
            f"direct gRPC p50 {item['direct_p50_ms']:.2f} ms)"
        )
    verdicts = results.get("targets") or []
    if verdicts:
        lines.append("Targets (split: the rounds fall on both sides of the threshold):")
        for verdict in verdicts:
            lines.append(f"  {verdict['outcome']:<6} {verdict['target']}: {verdict['measured']}")
    failed = [row for row in rows if row["errors"]]
    for row in failed:
        lines.append(
            f"  ! {row['system']} {row['size']} {row['payload']} c={row['concurrency']}: "
            f"{row['errors']} errors, first: {row['first_error']}"
        )
    return lines


def print_summary(results: dict[str, Any], directory: Path) -> None:
    for line in summary_lines(results):
        print(line)
    files = results.get("files", {})
    print(f"Results: {directory / (results['timestamp'] + '.json')}")
    if files.get("markdown"):
        print(f"Table:   {directory / files['markdown']}")
    for name in files.get("plots", []):
        print(f"Plot:    {directory / name}")
