"""The process's own Prometheus metrics, the same on both tiers.

prometheus_client's collectors give CPU seconds, resident and virtual memory,
open and maximum file descriptors and the start time (``process_*``), the
interpreter (``python_info``) and garbage collections (``python_gc_*``);
``process_threads`` adds every thread of the process, ONNX Runtime's native
ones included, and ``clothing_memory_limit_bytes`` the container's memory
limit (0 without one), which the memory alert compares resident memory with.
Each tier keeps a registry of its own, so they are added to it here rather
than relying on the global registry. Both tiers' extras install
prometheus_client; the core does not import this module.
"""

from __future__ import annotations

import threading
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

from clothing import cgroup

_STATUS = Path("/proc/self/status")


def thread_count() -> int:
    """Threads of this process as the kernel counts them (Python's own count elsewhere)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return threading.active_count()


def add_process_collectors(registry: CollectorRegistry) -> None:
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    threads = Gauge("process_threads", "Threads of this process.", registry=registry)
    threads.set_function(thread_count)
    limit = Gauge(
        "clothing_memory_limit_bytes",
        "The memory limit of the process's cgroup (the container's); 0: none.",
        registry=registry,
    )
    limit.set(cgroup.memory_limit() or 0)
