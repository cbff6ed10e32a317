"""Child processes on loopback: a free port, a start with the output in a log file,
the wait until the child answers, and the stop (SIGTERM, then kill).

``clothing up``, ``clothing bench``, the scripts and the tests all start servers as
child processes and need the same few steps; they are written here, once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def start_logged(
    command: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``command`` with stdout and stderr in ``log_path`` and no stdin.

    ``env`` adds to this process's environment. ``new_session`` gives the child a
    process group of its own, which a signal to the group then reaches whole.
    """
    full_env = {**os.environ, **env} if env else None
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            list(command),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=new_session,
        )


def poll_until_ok(
    url: str,
    process: subprocess.Popen[Any] | None,
    *,
    timeout: float,
    interval: float = 0.1,
) -> str | None:
    """Poll ``url`` (loopback) until it answers 200: None then, else why it never did.

    Stops at once when ``process`` exits, so a server that crashed on start-up is
    reported in the time of one poll rather than ``timeout``.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return f"the process exited with {process.returncode} ({last})"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as answer:  # noqa: S310 (loopback)
                if answer.status == 200:
                    return None
                last = f"HTTP {answer.status}"
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
        except (OSError, urllib.error.URLError) as error:
            last = repr(error)
        time.sleep(interval)
    return f"not ready after {timeout:g} s ({last})"


class NotReady(RuntimeError):
    """A started server never answered 200: it exited, or it ran out of time."""


def wait_ready(url: str, process: subprocess.Popen[Any] | None, timeout: float) -> None:
    """Poll ``url`` until it answers 200; raise :class:`NotReady` if it never does."""
    failure = poll_until_ok(url, process, timeout=timeout)
    if failure is not None:
        raise NotReady(f"{url}: {failure}")


def stop_process(
    process: subprocess.Popen[Any],
    timeout: float = 30.0,
    *,
    kill: Callable[[], object] | None = None,
) -> int:
    """SIGTERM a child if it still runs, wait, kill it after ``timeout``; its exit code.

    ``kill`` replaces the plain SIGKILL of the child (to say so, or to kill its group).
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            (kill or process.kill)()
            process.wait()
    return int(process.returncode)
