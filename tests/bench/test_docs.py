"""docs/benchmarks.md lists every flag of `clothing bench`, and nothing else."""

import argparse
import re
from pathlib import Path

from clothing import bench_cli

DOCS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def _cli_flags() -> set[str]:
    parser = argparse.ArgumentParser()
    bench_cli.configure(parser)
    return {
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }


def _documented_flags() -> set[str]:
    # Option-table rows start with the flag in backticks: | `--requests N` | ...
    return set(re.findall(r"^\| `(--[a-z0-9-]+)", DOCS.read_text(), flags=re.MULTILINE))


def test_option_table_lists_every_flag() -> None:
    cli = _cli_flags()
    documented = _documented_flags()
    assert cli - documented == set(), "flags missing from docs/benchmarks.md"
    assert documented - cli == set(), "docs/benchmarks.md lists flags the CLI lacks"
