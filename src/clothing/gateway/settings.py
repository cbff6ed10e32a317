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

from dataclasses import dataclass, field, fields
from pathlib import Path

from clothing.cgroup import available_cpus
from clothing.gateway.addresses import AllowList
from clothing.gateway.fetch import FetchLimits
from clothing.gateway.imaging import DEFAULT_MAX_PIXELS, PREPROCESSINGS, Preprocessing

MB = 1024 * 1024

_FETCH = FetchLimits()  # one home for the download limits' defaults


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "0.0.0.0"  # noqa: S104 - a gateway in a container must listen on all interfaces
    port: int = 9696
    tf_serving_host: str = "localhost:8500"
    model_name: str = "clothing-model"
    signature: str = "serving_default"
    preprocessing: str = "auto"
    grpc_deadline: float = 5.0
    fetch_connect_timeout: float = _FETCH.connect_timeout
    fetch_read_timeout: float = _FETCH.read_timeout
    fetch_timeout: float = _FETCH.total_timeout
    max_redirects: int = _FETCH.max_redirects
    max_image_bytes: int = _FETCH.max_bytes
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_batch: int = 16
    max_inflight: int = 64
    allow_hosts: tuple[str, ...] = field(default_factory=tuple)
    labels: str | None = None
    # The container's CPU quota, not the node's cores.
    workers: int = field(default_factory=lambda: min(4, available_cpus()))
    ready_cache_seconds: float = 1.0
    cors_origins: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ValueError(f"port must be an integer from 1 to 65535, got {self.port!r}")
        positive = (
            "grpc_deadline",
            "fetch_connect_timeout",
            "fetch_read_timeout",
            "fetch_timeout",
            "max_image_bytes",
            "max_pixels",
            "max_batch",
            "max_inflight",
            "workers",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must not be negative")
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
            max_redirects=self.max_redirects,
            connect_timeout=self.fetch_connect_timeout,
            read_timeout=self.fetch_read_timeout,
            total_timeout=self.fetch_timeout,
        )

    @property
    def preprocessing_override(self) -> Preprocessing | None:
        value = self.preprocessing
        return None if value == "auto" else value  # type: ignore[return-value]

    @property
    def max_body_bytes(self) -> int:
        """The largest request body: a full batch of base64 images plus room for the JSON."""
        return self.max_batch * (self.max_image_bytes * 4 // 3 + 4096) + MB

    def load_labels(self) -> tuple[str, ...] | None:
        if self.labels is None:
            return None
        names = [line.strip() for line in Path(self.labels).read_text().splitlines()]
        names = [n for n in names if n]
        if not names:
            raise ValueError(f"labels file {self.labels} has no class names")
        return tuple(names)


ENV_NAMES = {
    "tf_serving_host": "TF_SERVING_HOST",
    "model_name": "MODEL_NAME",
    "port": "GATEWAY_PORT_NUMBER",  # never GATEWAY_PORT: see the module's docstring
}


def env_name(setting: str) -> str:
    return ENV_NAMES.get(setting, f"GATEWAY_{setting.upper()}")


SETTING_NAMES = tuple(f.name for f in fields(GatewaySettings))
