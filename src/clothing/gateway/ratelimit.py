"""A token bucket per client: ``rate`` requests a second sustained, ``burst`` at once.

The client is the address uvicorn puts in the request's scope: the peer's, or the
one a trusted proxy forwarded (``--forwarded-allow-ips``). IPv6 clients are counted
per /64 network, the block one subscriber usually holds, so a client cannot escape
its bucket by changing the low bits of its address.

Memory stays bounded however many clients there are: at most ``max_clients``
buckets are kept, and past that the one seen least recently is dropped. A dropped
client starts again with a full bucket; the least recent is usually one that has
refilled anyway, and then nothing changes at all.

The page, its static files and the health routes are never limited: a browser
loading the page, and probes and load balancers checking the gateway, never spend
the tokens a client's predictions need.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

# At most this many clients are tracked at once (about 250 bytes each: a few MB).
MAX_CLIENTS = 16384
EXEMPT_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics"})
EXEMPT_PREFIXES = ("/static/",)
IPV6_CLIENT_PREFIX = 64


def exempt(path: str) -> bool:
    """True for the routes no client is limited on."""
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


def client_key(host: str | None) -> str:
    """The bucket a client address counts against: itself, or its /64 for IPv6."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP address (a unix socket's name): itself
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


class ClientBuckets:
    """One token bucket per client key, at most ``max_clients`` of them."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate must be positive, burst and max_clients at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        # key -> (tokens, when they were counted); least recently seen first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Spend one of ``key``'s tokens: 0 when it had one, else the seconds until it has."""
        now = self.clock()
        tokens, counted = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - counted) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def retry_after_seconds(wait: float) -> int:
    """``Retry-After`` is whole seconds: the wait rounded up, at least 1."""
    return max(1, math.ceil(wait))
