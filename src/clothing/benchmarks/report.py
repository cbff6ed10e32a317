"""Write a run's results: JSON (everything), a markdown summary and PNG plots."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ratio(row: dict[str, Any], key: str) -> str:
    """A pooled ratio with the lowest and highest of its rounds: ``0.91 (0.86–0.95)``."""
    value = row.get(key)
    if value is None:
        return "–"
    spread = row.get(f"{key}_range")
    if not spread:
        return f"{value:.2f}"
    return f"{value:.2f} ({spread[0]:.2f}–{spread[1]:.2f})"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def group_rows(rows: list[Row]) -> dict[tuple[int, str, str], list[Row]]:
    """Rows by (level, size, payload); level-1 rows have size and payload ``tensor``."""
    groups: dict[tuple[int, str, str], list[Row]] = defaultdict(list)
    for row in rows:
        groups[(row["level"], row["size"], row["payload"])].append(row)
    return dict(groups)


def _level1_markdown(results: dict[str, Any]) -> list[str]:
    level1 = results.get("level1")
    if not level1:
        return []
    ceiling = level1["ceiling"]
    lines = [
        "## Level 1: tensor in, probabilities out",
        "",
        f"Ceiling (in-process ONNX Runtime, best batch {ceiling['best_batch']}): "
        f"**{ceiling['images_per_s']:.1f} images/s** at the start. "
        f"Bare `session.run` at batch 1: p50 {level1['bare_run']['p50_ms']:.2f} ms. "
        "Each cell is compared with the ceiling at that batch size measured in blocks "
        "alternating with the server's blocks in the same cell (and the c=1 cells with bare "
        "runs measured the same way).",
        "",
    ]
    table = [
        [
            row["system"],
            str(row["concurrency"]),
            _fmt(row["images_per_s"]),
            _fmt(row["p50_ms"], 2),
            _fmt(row["p99_ms"], 2),
            _fmt(row.get("ceiling_images_per_s")),
            fmt_ratio(row, "ratio_to_ceiling"),
            str(row["errors"]),
        ]
        for row in results["rows"]
        if row["level"] == 1
    ]
    headers = [
        "system",
        "concurrency",
        "images/s",
        "p50 ms",
        "p99 ms",
        "ceiling in the cell",
        "× that ceiling (rounds)",
        "errors",
    ]
    lines += [_table(headers, table), ""]
    floor = level1.get("c1_p50_over_bare_ms")
    if floor:
        lines += [
            "Model server p50 at concurrency 1 minus bare `session.run` p50: "
            + ", ".join(f"{system} {value:+.2f} ms" for system, value in floor.items()),
            "",
        ]
    return lines


def _level2_markdown(results: dict[str, Any]) -> list[str]:
    rows = [row for row in results["rows"] if row["level"] == 2]
    if not rows:
        return []
    lines = ["## Level 2: photo in, class JSON out", ""]
    for (_, size, payload), group in sorted(group_rows(rows).items()):
        lines += [f"### {size}-size photos, {payload} payload", ""]
        table = [
            [
                row["system"],
                str(row["concurrency"]),
                _fmt(row["images_per_s"]),
                _fmt(row["p50_ms"]),
                _fmt(row["p99_ms"]),
                fmt_ratio(row, "vs_ceiling"),
                fmt_ratio(row, "vs_baseline"),
                fmt_ratio(row, "vs_framework"),
                str(row["errors"]),
            ]
            for row in group
        ]
        headers = [
            "system",
            "concurrency",
            "images/s",
            "p50 ms",
            "p99 ms",
            "÷ photo-in ceiling (rounds)",
            "ours ÷ baseline (rounds)",
            "ours ÷ framework (rounds)",
            "errors",
        ]
        lines += [_table(headers, table), ""]
    return lines


def _extras_markdown(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    pre = results.get("preprocessing")
    if pre:
        lines += ["## Preprocessing per image", ""]
        table = [
            [
                size,
                f"{item['photo_width']}×{item['photo_height']}",
                _fmt(item["gateway_ms"], 2),
                _fmt(item["plain_pillow_ms"], 2),
                _fmt(item["speedup"], 2),
            ]
            for size, item in pre.items()
        ]
        headers = ["photos", "pixels", "gateway ms", "plain Pillow ms", "speed-up"]
        lines += [_table(headers, table), ""]
    overhead = results.get("gateway_overhead")
    if overhead:
        lines += [
            "## Gateway overhead at concurrency 1 (base64 photos)",
            "",
            "Paired: each photo goes to the gateway and straight to the model server "
            "(decoded with the gateway's code) back to back, in alternating order; "
            "the overhead is the median of the per-pair differences.",
            "",
        ]
        table = [
            [
                size,
                str(item.get("pairs", "–")),
                _fmt(item["gateway_p50_ms"], 2),
                _fmt(item["direct_p50_ms"], 2),
                _fmt(item["overhead_ms"], 2),
            ]
            for size, item in overhead.items()
        ]
        headers = ["photos", "pairs", "gateway p50 ms", "direct gRPC p50 ms", "overhead ms"]
        lines += [_table(headers, table), ""]
    return lines


def _targets_markdown(results: dict[str, Any]) -> list[str]:
    verdicts = results.get("targets")
    if not verdicts:
        return []
    lines = [
        "## Targets",
        "",
        "Met: the pooled ratio and every round clear the target; missed: none do; "
        "split: the rounds fall on both sides, so this run does not settle it.",
        "",
    ]
    table = [[v["target"], v["measured"], v["outcome"]] for v in verdicts]
    return [*lines, _table(["target", "this run", "verdict"], table), ""]


def to_markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    config = results["config"]
    lines = [
        f"# Benchmark run {results['timestamp']}",
        "",
        f"Machine: {machine['cpu_model']}, {machine['nproc']} CPUs, "
        f"{machine['memory_gib']} GiB memory; device {config['device']}. "
        f"Model: {results['model']['path']} ({results['model']['width']}×"
        f"{results['model']['height']}, {results['model'].get('precision', 'float32')}). "
        + (
            f"{config['requests']} requests per cell"
            if config.get("requests")
            else f"{config['duration_s']} s per cell"
        )
        + ".",
        "",
    ]
    lines += (
        _targets_markdown(results)
        + _level1_markdown(results)
        + _level2_markdown(results)
        + _extras_markdown(results)
    )
    return "\n".join(lines).rstrip() + "\n"


def plot(results: dict[str, Any], directory: Path, stem: str) -> list[Path]:
    """One PNG per (level, size, payload): images/s, p50 and p99 against concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    ceiling = (results.get("level1") or {}).get("ceiling", {}).get("images_per_s")
    for (level, size, payload), group in sorted(group_rows(results["rows"]).items()):
        figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        by_system: dict[str, list[Row]] = defaultdict(list)
        for row in group:
            by_system[row["system"]].append(row)
        for system, points in by_system.items():
            points.sort(key=lambda row: row["concurrency"])
            xs = [row["concurrency"] for row in points]
            for axis, key in zip(axes, ("images_per_s", "p50_ms", "p99_ms"), strict=True):
                axis.plot(xs, [row[key] for row in points], marker="o", label=system)
        if level == 1 and ceiling:
            axes[0].axhline(ceiling, linestyle="--", color="grey", label="ceiling (in-process)")
        titles = ("throughput (images/s)", "p50 latency (ms)", "p99 latency (ms)")
        concurrencies = sorted({row["concurrency"] for row in group})
        for axis, title in zip(axes, titles, strict=True):
            axis.set_xscale("log", base=2)
            axis.set_xticks(concurrencies, [str(value) for value in concurrencies])
            axis.minorticks_off()
            axis.set_xlabel("concurrency")
            axis.set_title(title)
            axis.grid(True, alpha=0.3)
            axis.set_ylim(bottom=0)
        axes[0].legend(fontsize="small")
        what = "tensor in" if level == 1 else f"{size}-size photos, {payload}"
        figure.suptitle(f"Level {level}: {what}")
        figure.tight_layout()
        name = f"{stem}-level{level}" + ("" if level == 1 else f"-{size}-{payload}") + ".png"
        path = directory / name
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    return written


def _finite(value: Any) -> Any:
    """NaN (no successful request) becomes null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def write_results(results: dict[str, Any], directory: Path) -> dict[str, Any]:
    """``<timestamp>.json``, ``<timestamp>.md`` and the PNGs into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = results["timestamp"]
    pngs = plot(results, directory, stem)
    markdown = to_markdown(results)
    plots_md = "\n".join(f"![{path.stem}]({path.name})" for path in pngs)
    (directory / f"{stem}.md").write_text(markdown + ("\n" + plots_md + "\n" if pngs else ""))
    results = {**results, "files": {"markdown": f"{stem}.md", "plots": [p.name for p in pngs]}}
    (directory / f"{stem}.json").write_text(json.dumps(_finite(results), indent=2, allow_nan=False))
    return results
