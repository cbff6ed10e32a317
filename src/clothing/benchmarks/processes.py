"""The measured systems as services: a child process with its log, paused between
cells, stopped whole (its process group) at the end.

The plain steps (a free port, the start, the readiness poll, SIGTERM then kill) are
:mod:`clothing.processes`, which the tests and ``clothing up`` use as well.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from clothing.processes import poll_until_ok, start_logged, stop_process


class ServiceError(RuntimeError):
    """A service did not start, or died while it was being measured."""


@dataclass
class Service:
    """One running subprocess with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ServiceError(
                f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def pause(self) -> None:
        """SIGSTOP the whole process group: a paused service takes no CPU at all."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process, then its whole process group.

        Some servers (LitServe) leave their API and worker processes behind when the
        parent exits; each service runs in its own session, so the group holds them.
        """
        # A paused process would hold SIGTERM pending until it is resumed.
        self.resume()
        stop_process(self.process, timeout, kill=lambda: self._signal_group(signal.SIGKILL))
        if self._signal_group(signal.SIGTERM):
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and self._signal_group(0):
                time.sleep(0.05)
            self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: int) -> bool:
        """Signal the service's process group; False once no process is left in it."""
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def wait_http_ready(service: Service, url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail early, with the log, if the process died."""
    failure = poll_until_ok(url, service.process, timeout=timeout)
    service.check_alive()
    if failure is not None:
        raise ServiceError(f"{service.name}: {url} {failure}")


def python_command(*args: str) -> list[str]:
    """This interpreter running ``args`` (``-m module ...``)."""
    return [sys.executable, *args]


@contextlib.contextmanager
def run_service(
    name: str,
    command: Sequence[str],
    *,
    ready_url: str,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    ready_timeout: float = 120.0,
) -> Iterator[Service]:
    """Start ``command``, wait for ``ready_url``, yield, then SIGTERM (and kill if stuck)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as log_dir:
        log_path = Path(log_dir) / "service.log"
        process = start_logged(command, log_path, env=env, cwd=cwd, new_session=True)
        service = Service(name, process, log_path)
        try:
            wait_http_ready(service, ready_url, ready_timeout)
            yield service
        finally:
            service.stop()
