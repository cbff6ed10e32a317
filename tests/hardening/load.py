"""A small bounded load generator for the fault tests: threads posting to the gateway."""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.images import noise_png


@dataclass(frozen=True)
class Outcome:
    started: float  # time.monotonic() when sent
    seconds: float
    status: str  # HTTP status, or the transport error's class name
    version: int | None = None
    retry_after: str | None = None


@dataclass
class Load:
    """``clients`` threads sending ``POST /predict`` until :meth:`stop`."""

    url: str
    clients: int = 8
    timeout: float = 15.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        bodies = [{"image_b64": base64.b64encode(noise_png(seed)).decode()} for seed in range(4)]
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(bodies[index % 4],), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return list(self.outcomes)

    def _client(self, body: dict[str, str]) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    answer = client.post(f"{self.url}/predict", json=body)
                    version = None
                    if answer.status_code == 200:
                        version = int(answer.json()["model"]["version"])
                    outcome = Outcome(
                        started,
                        time.monotonic() - started,
                        str(answer.status_code),
                        version,
                        answer.headers.get("Retry-After"),
                    )
                except httpx.HTTPError as error:
                    outcome = Outcome(started, time.monotonic() - started, type(error).__name__)
                    time.sleep(0.05)
                with self._lock:
                    self.outcomes.append(outcome)
                if outcome.status != "200":
                    time.sleep(0.02)


def tally(outcomes: list[Outcome]) -> dict[str, int]:
    return dict(Counter(o.status for o in outcomes))
