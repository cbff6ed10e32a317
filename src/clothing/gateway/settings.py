"""The gateway's settings: one frozen object, validated once at start-up.

Every setting is a flag of ``clothing gateway`` and an environment variable
(``GATEWAY_<NAME>``), except the two names the original gateway already used,
``TF_SERVING_HOST`` and ``MODEL_NAME``, and the port, read from
``GATEWAY_PORT_NUMBER``: Kubernetes sets ``GATEWAY_PORT=tcp://<ip>:<port>`` in
every pod of a namespace holding a Service named ``gateway`` (and
``<SERVICE>_PORT`` for any other Service name), so no variable this gateway
reads may have a name Kubernetes could inject.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields
from pathlib import Path

from clothing import cgroup
from clothing.gateway.addresses import AllowList
from clothing.gateway.decode_pool import DEFAULT_DECODE_TIMEOUT
from clothing.gateway.fetch import FetchLimits
from clothing.gateway.imaging import DEFAULT_MAX_PIXELS
from clothing.gateway.ratelimit import ClientBuckets
from clothing.http_limits import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_HEADER_BYTES
from clothing.preprocessing import PREPROCESSINGS, Preprocessing

MB = 1024 * 1024

_FETCH = FetchLimits()  # one home for the download limits' defaults

# Share of the process's memory limit that the images being decoded at once may hold
# (the rest: the interpreter and libraries, about 100 MB, request bodies, responses).
DECODE_MEMORY_SHARE = 4
# Share of it that request bodies being received may hold, all requests together.
BODY_MEMORY_SHARE = 8
# Share of it that downloaded images may hold until decoded, all downloads together.
DOWNLOAD_MEMORY_SHARE = 8
# JSON or multipart framing around one base64 image (field names, a data: URL prefix).
BODY_OVERHEAD = 64 * 1024
# The limit assumed where the process has none (a laptop, a container without one).
MEMORY_WITHOUT_LIMIT = 1024 * MB


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "0.0.0.0"  # noqa: S104 - a gateway in a container must listen on all interfaces
    port: int = 9696
    # Prometheus metrics on a port of their own, which the public Service does not
    # expose (0: on the main port, as /metrics, for local runs).
    metrics_port: int = 9697
    tf_serving_host: str = "localhost:8500"
    model_name: str = "clothing-model"
    signature: str = "serving_default"
    preprocessing: str = "auto"
    grpc_deadline: float = 5.0
    fetch_connect_timeout: float = _FETCH.connect_timeout
    fetch_read_timeout: float = _FETCH.read_timeout
    fetch_timeout: float = _FETCH.total_timeout
    max_redirects: int = _FETCH.max_redirects
    # Image host lookups: threads of their own and a deadline each.
    dns_threads: int = 8
    dns_timeout: float = 2.0
    max_image_bytes: int = _FETCH.max_bytes
    max_fetch_bytes: int = _FETCH.max_total_bytes
    fetch_ports: tuple[int, ...] = tuple(sorted(_FETCH.ports))
    max_host_fetches: int = _FETCH.max_host_fetches
    max_pixels: int = DEFAULT_MAX_PIXELS
    # Bytes one decode may hold; 0: a quarter of the memory limit over the workers.
    max_decode_bytes: int = 0
    # Seconds one image may take to decode before its worker process is stopped (413).
    decode_timeout: float = DEFAULT_DECODE_TIMEOUT
    max_batch: int = 16
    max_inflight: int = 64
    # Seconds a request's whole body may take to arrive, before a slot is taken.
    body_timeout: float = 10.0
    # A request's line and header fields: at most this many bytes (431), complete within
    # this many seconds of its first byte (408).
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    allow_hosts: tuple[str, ...] = field(default_factory=tuple)
    # Host header names served besides IP addresses and dotless names (see guard.HostCheck).
    allowed_hosts: tuple[str, ...] = ("localhost", ".localhost", ".svc", ".svc.cluster.local")
    labels: str | None = None
    # The container's CPUs (its quota), not the node's cores.
    workers: int = field(default_factory=lambda: min(4, cgroup.available_cpus()))
    ready_cache_seconds: float = 1.0
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    # Seconds an idle keep-alive connection stays open. Behind a load balancer that
    # reuses its connections to the gateway, it must outlast the balancer's own idle
    # timeout, or a request sent as the gateway closes the connection fails (a 502).
    keep_alive_timeout: int = 5
    # Peers whose X-Forwarded-For and X-Forwarded-Proto are believed (addresses or
    # networks, "*" for any): the proxies in front, so that logs and the rate limit
    # see the client, and no one else, who could then pose as any client.
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    # Requests a second each client may sustain, and how many at once beyond that
    # (a token bucket); 0 turns the limit off.
    rate_limit: float = 10.0
    rate_burst: int = 40

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ValueError(f"port must be an integer from 1 to 65535, got {self.port!r}")
        positive = (
            "grpc_deadline",
            "fetch_connect_timeout",
            "fetch_read_timeout",
            "fetch_timeout",
            "dns_threads",
            "dns_timeout",
            "max_image_bytes",
            "max_fetch_bytes",
            "max_host_fetches",
            "max_pixels",
            "max_batch",
            "max_inflight",
            "body_timeout",
            "decode_timeout",
            "max_header_bytes",
            "header_timeout",
            "workers",
            "keep_alive_timeout",
            "rate_burst",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.metrics_port <= 65535 or self.metrics_port == self.port:
            raise ValueError("metrics_port must be 0 or a port other than port")
        if not self.fetch_ports or not all(0 < port < 65536 for port in self.fetch_ports):
            raise ValueError("fetch_ports must list ports between 1 and 65535")
        if self.max_decode_bytes < 0:
            raise ValueError("max_decode_bytes must not be negative")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must not be negative")
        if self.rate_limit < 0:
            raise ValueError("rate_limit must not be negative (0 turns it off)")
        _check_networks("forwarded_allow_ips", self.forwarded_allow_ips)
        if self.preprocessing != "auto" and self.preprocessing not in PREPROCESSINGS:
            choices = ", ".join(("auto", *PREPROCESSINGS))
            raise ValueError(f"preprocessing must be one of {choices}")
        if not self.tf_serving_host.strip():
            raise ValueError("tf_serving_host is empty")
        AllowList.parse(self.allow_hosts)  # raises ValueError on a malformed entry
        if self.labels is not None and not Path(self.labels).is_file():
            raise ValueError(f"labels file {self.labels} does not exist")

    @property
    def fetch_limits(self) -> FetchLimits:
        return FetchLimits(
            max_bytes=self.max_image_bytes,
            max_total_bytes=self.max_fetch_bytes,
            ports=frozenset(self.fetch_ports),
            max_redirects=self.max_redirects,
            connect_timeout=self.fetch_connect_timeout,
            read_timeout=self.fetch_read_timeout,
            total_timeout=self.fetch_timeout,
            max_host_fetches=self.max_host_fetches,
        )

    def client_buckets(self) -> ClientBuckets | None:
        """The per-client rate limit's buckets, or None where it is off."""
        return ClientBuckets(self.rate_limit, self.rate_burst) if self.rate_limit else None

    @property
    def download_budget(self) -> int:
        """Bytes all downloads may hold together until decoded (past it: 429): an eighth
        of the memory limit, and at least one image's worth."""
        return max(self.max_image_bytes, self.memory // DOWNLOAD_MEMORY_SHARE)

    @property
    def decode_budget(self) -> int:
        """Bytes one image's decode may hold: ``max_decode_bytes``, else a quarter of the
        memory limit (1 GiB assumed without one) shared by the decode workers."""
        if self.max_decode_bytes:
            return self.max_decode_bytes
        return self.memory // DECODE_MEMORY_SHARE // self.workers

    @property
    def preprocessing_override(self) -> Preprocessing | None:
        value = self.preprocessing
        return None if value == "auto" else value  # type: ignore[return-value]

    @property
    def memory(self) -> int:
        """The process's memory limit, or the figure assumed without one."""
        return cgroup.memory_limit() or MEMORY_WITHOUT_LIMIT

    @property
    def max_body_bytes(self) -> int:
        """The largest ``/predict`` body: one image in base64 plus room for the JSON or
        multipart framing around it."""
        return self.max_image_bytes * 4 // 3 + BODY_OVERHEAD

    @property
    def max_batch_body_bytes(self) -> int:
        """The largest ``/predict/batch`` body: ``max_batch`` images' worth, at most the
        bytes all bodies together may hold."""
        return min(self.max_batch * self.max_body_bytes, self.max_buffered_body_bytes)

    @property
    def max_buffered_body_bytes(self) -> int:
        """Request body bytes the gateway holds at once, all requests together: past it
        a request is refused with 429 (a body is parsed and decoded into about two more
        copies, so this takes the other quarter of the memory beside the decode budget)."""
        return self.memory // BODY_MEMORY_SHARE

    def load_labels(self) -> tuple[str, ...] | None:
        if self.labels is None:
            return None
        names = [line.strip() for line in Path(self.labels).read_text().splitlines()]
        names = [n for n in names if n]
        if not names:
            raise ValueError(f"labels file {self.labels} has no class names")
        return tuple(names)


def _check_networks(setting: str, entries: tuple[str, ...]) -> None:
    """Each entry an address or a network (or "*"); ValueError naming the first that is not."""
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{setting}: {entry!r} is not an address or network") from None


ENV_NAMES = {
    "tf_serving_host": "TF_SERVING_HOST",
    "model_name": "MODEL_NAME",
}


def env_name(setting: str) -> str:
    """``GATEWAY_<SETTING>``, and ``..._PORT_NUMBER`` for a port: a name ending in ``_PORT``
    is one Kubernetes could inject (see the module's docstring)."""
    if setting in ENV_NAMES:
        return ENV_NAMES[setting]
    name = f"GATEWAY_{setting.upper()}"
    return f"{name}_NUMBER" if name.endswith("_PORT") else name


SETTING_NAMES = tuple(f.name for f in fields(GatewaySettings))
