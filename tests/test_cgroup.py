"""Limits are read from cgroup v2 and v1 files, and absent limits read as none."""

from __future__ import annotations

import os
from pathlib import Path

from clothing.cgroup import available_cpus, cpu_quota, memory_limit


def write(root: Path, name: str, text: str) -> None:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text + "\n")


def test_v2_quota_and_memory(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "150000 100000")
    write(tmp_path, "memory.max", "536870912")
    assert cpu_quota(tmp_path) == 1.5
    assert available_cpus(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    assert memory_limit(tmp_path) == 512 * 1024 * 1024


def test_v2_without_limits(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "max 100000")
    write(tmp_path, "memory.max", "max")
    assert cpu_quota(tmp_path) is None
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))
    assert memory_limit(tmp_path) is None


def test_v1_files(tmp_path: Path) -> None:
    write(tmp_path, "cpu/cpu.cfs_quota_us", "50000")
    write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    write(tmp_path, "memory/memory.limit_in_bytes", str(2 << 30))
    assert cpu_quota(tmp_path) == 0.5
    assert available_cpus(tmp_path) == 1
    assert memory_limit(tmp_path) == 2 << 30


def test_v1_unlimited(tmp_path: Path) -> None:
    write(tmp_path, "cpu/cpu.cfs_quota_us", "-1")
    write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    write(tmp_path, "memory/memory.limit_in_bytes", "9223372036854771712")
    assert cpu_quota(tmp_path) is None
    assert memory_limit(tmp_path) is None


def test_no_cgroup_files(tmp_path: Path) -> None:
    assert cpu_quota(tmp_path) is None
    assert memory_limit(tmp_path) is None
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))
