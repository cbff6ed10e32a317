"""uvicorn with a clean exit after a drained shutdown.

uvicorn re-raises SIGTERM once its graceful shutdown is done, so the process
ends "killed by SIGTERM" (exit -15 / 143) even though every in-flight request
was answered. Orchestrators and ``clothing up`` read that as a crash. This
server keeps uvicorn's drain (stop accepting, finish in-flight requests within
``timeout_graceful_shutdown``) and then returns normally, so the exit code is 0.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import uvicorn


class GatewayServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Signals can only be handled in the main thread (tests run servers elsewhere).
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self.should_exit and signum == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C skips the drain
            else:
                self.should_exit = True

        originals = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)
