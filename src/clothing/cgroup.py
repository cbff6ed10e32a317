"""The CPU and memory this process may use: the container's limits, not the node's size.

``os.cpu_count()`` reports the node's cores, so a 1-CPU pod on a 16-core node
would size its thread pools for 16 and be throttled. Kubernetes and Docker
express limits as a cgroup CPU quota and a memory limit; both cgroup v2 and
v1 files are read. ``root`` is a parameter so that tests can point it at a
folder of their own.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 reports "no limit" as a huge page-aligned number rather than "max".
_V1_UNLIMITED = 1 << 60


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup's quota allows (e.g. 1.5), or None without a quota."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        if quota == "max" or not period:
            return None
        return int(quota) / int(period)
    quota_v1 = _read(root / "cpu" / "cpu.cfs_quota_us") or _read(root / "cpu.cfs_quota_us")
    period_v1 = _read(root / "cpu" / "cpu.cfs_period_us") or _read(root / "cpu.cfs_period_us")
    if quota_v1 is None or period_v1 is None or int(quota_v1) <= 0:
        return None
    return int(quota_v1) / int(period_v1)


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs to size thread pools for: the quota rounded up, at most the usable cores."""
    cores = len(os.sched_getaffinity(0))
    quota = cpu_quota(root)
    if quota is None:
        return cores
    return max(1, min(cores, math.ceil(quota)))


def memory_limit(root: Path = CGROUP_ROOT) -> int | None:
    """Bytes the cgroup may hold, or None without a limit."""
    v2 = _read(root / "memory.max")
    if v2 is not None:
        return None if v2 == "max" else int(v2)
    v1 = _read(root / "memory" / "memory.limit_in_bytes") or _read(root / "memory.limit_in_bytes")
    if v1 is None or int(v1) >= _V1_UNLIMITED:
        return None
    return int(v1)
