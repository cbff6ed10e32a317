"""Waiting for a freshly started server's readiness endpoint.

``clothing up``, the benchmark and the tests all start servers as child processes
and poll an HTTP endpoint until it answers 200, giving up early when the child
exits. This is that loop, once.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from typing import Any


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
