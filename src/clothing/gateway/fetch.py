"""Download an image from a URL without becoming a proxy into the private network.

Each hop (the first request and every redirect, at most ``max_redirects``):

1. only ``http`` and ``https`` URLs without credentials are accepted, checked
   strictly (:mod:`.urls`);
2. the host is resolved once and every address checked (:mod:`.addresses`);
3. the request goes to the checked IP itself (:mod:`.http_get`, a fresh
   connection each time), with the original ``Host`` header and, for https,
   the original name as SNI so certificate checks still apply to the name: no
   second DNS lookup can swap the address (DNS rebinding);
4. the body is streamed and cut at ``max_bytes`` (an announced
   ``Content-Length`` over the cap is refused before reading); trailers and
   chunk framing are capped too (:mod:`.http_get`);
5. an https URL is never redirected to http.

Connect and read timeouts apply per operation; a total timeout covers the whole
fetch, so a server trickling one byte a second still ends on time.

Fairness: the bytes all downloads of the process hold, from the first byte until
the image is decoded, share one budget (past it: 429, try again), and one image
host (one address; an IPv6 /64) is fetched from by at most ``max_host_fetches``
requests at once, so a host that trickles cannot hold every in-flight slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from clothing.gateway.addresses import AddressPolicy, IPAddress
from clothing.gateway.errors import (
    BadRequest,
    ImageHostFailed,
    Overloaded,
    TooLarge,
    UpstreamTimeout,
)
from clothing.gateway.http_get import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    BodyTooLarge,
    BudgetExhausted,
    ByteBudget,
    HttpConnectError,
    HttpGetError,
    HttpGetter,
    HttpGetTimeout,
    Lease,
    Response,
)
from clothing.gateway.urls import ImageUrl, parse_image_url

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
log = logging.getLogger("clothing.gateway")


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 10 * 1024 * 1024
    # Bytes downloaded for one request, all its URLs together: a 16-URL batch shares
    # this (2.5 MiB each) instead of fetching 16 x max_bytes from someone's server.
    max_total_bytes: int = 40 * 1024 * 1024
    # Ports public image hosts are fetched on; allow-listed hosts may use any.
    ports: frozenset[int] = frozenset({80, 443})
    max_redirects: int = 3
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    total_timeout: float = 10.0
    # Downloads from one image host (address) at once: a batch's worth.
    max_host_fetches: int = 16


@dataclass
class FetchResult:
    content: bytes
    url: str  # the final URL, after redirects
    redirects: int
    # The content's bytes in the process's download budget: release once decoded.
    lease: Lease = field(default_factory=lambda: Lease(None))


UNREACHABLE = "the image host could not be reached"


class ImageGetter(Protocol):
    """The one call the fetcher makes per hop (:meth:`HttpGetter.get` answers it).

    Raises :class:`HttpGetError` and its subclasses for every failure.
    """

    async def get(
        self,
        address: str,
        port: int,
        *,
        host_header: str,
        target: str,
        tls_name: str | None,
        max_bytes: int,
        lease: Lease | None = None,
    ) -> Response: ...


def new_image_client(limits: FetchLimits) -> HttpGetter:
    """The downloader the gateway uses by default: system CA store, the limits' timeouts.

    It never uses proxy variables, so nothing sends requests around the checks.
    """
    return HttpGetter(connect_timeout=limits.connect_timeout, read_timeout=limits.read_timeout)


@dataclass
class ImageFetcher:
    """Fetches image bytes through an injected :class:`ImageGetter`."""

    client: ImageGetter
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    limits: FetchLimits = field(default_factory=FetchLimits)
    # Shared by every download of the process; None: no process-wide budget.
    budget: ByteBudget | None = None
    _per_host: dict[str, int] = field(default_factory=dict, init=False)

    async def fetch(self, raw_url: str, max_bytes: int | None = None) -> FetchResult:
        """The image at ``raw_url``, at most ``max_bytes`` (default: the limits').

        The result's ``lease`` holds its bytes in the download budget until released.
        """
        cap = min(max_bytes or self.limits.max_bytes, self.limits.max_bytes)
        lease = Lease(self.budget)
        try:
            async with asyncio.timeout(self.limits.total_timeout):
                return await self._follow(parse_image_url(raw_url), cap, lease)
        except TimeoutError:
            lease.release()
            raise UpstreamTimeout(
                f"image host did not answer within {self.limits.total_timeout:g} s"
            ) from None
        except BaseException:
            lease.release()
            raise

    async def _follow(self, url: ImageUrl, cap: int, lease: Lease) -> FetchResult:
        for hop in range(self.limits.max_redirects + 1):
            response_or_next = await self._one_hop(url, cap, lease)
            if isinstance(response_or_next, bytes):
                return FetchResult(response_or_next, str(url), hop, lease)
            url = response_or_next
        raise ImageHostFailed(f"more than {self.limits.max_redirects} redirects")

    async def _one_hop(self, url: ImageUrl, cap: int, lease: Lease) -> bytes | ImageUrl:
        """The body, or the next URL when the answer is a redirect."""
        port = url.connect_port
        address = await self.policy.checked_address(url.host, port, self.limits.ports)
        try:
            with self._host_slot(address):
                response = await self.client.get(
                    str(address),
                    port,
                    host_header=url.host_header,
                    target=url.target,
                    tls_name=url.tls_name,
                    max_bytes=cap,
                    lease=lease,
                )
        except BudgetExhausted:
            raise Overloaded("too many image bytes being downloaded; retry") from None
        except BodyTooLarge as error:
            if error.announced is not None:
                raise TooLarge(f"image is {error.announced} bytes, the limit is {cap}") from None
            raise TooLarge(f"image is over the limit of {cap} bytes") from None
        except HttpConnectError as error:
            # One answer whether the port is closed, filtered or the handshake failed,
            # so the gateway cannot be used to tell them apart; the detail is logged.
            log.info("cannot connect to %s:%d for %s: %s", address, port, url.host, error)
            raise ImageHostFailed(UNREACHABLE) from None
        except HttpGetTimeout as error:
            during = " while sending" if error.in_body else ""
            raise UpstreamTimeout(f"image host timed out{during}") from None
        except HttpGetError as error:
            what = "image download failed" if error.in_body else "image host failed"
            raise ImageHostFailed(f"{what}: {error}") from None
        if response.status in _REDIRECTS:
            location = response.headers.get("location")
            if not location:
                raise ImageHostFailed("redirect without a Location header")
            try:
                following = url.join(location)
            except BadRequest:
                raise ImageHostFailed("the image host redirected to an invalid URL") from None
            if url.scheme == "https" and following.scheme == "http":
                # What was asked for over TLS must not arrive in the clear, altered on the way.
                raise ImageHostFailed("the image host redirected from https to http")
            return following
        if response.status != 200:
            raise ImageHostFailed(f"image host answered HTTP {response.status}")
        return response.body

    @contextlib.contextmanager
    def _host_slot(self, address: IPAddress) -> Iterator[None]:
        """One of the ``max_host_fetches`` downloads from ``address``'s host at once."""
        key = host_key(address)
        if self._per_host.get(key, 0) >= self.limits.max_host_fetches:
            raise Overloaded(
                f"more than {self.limits.max_host_fetches} downloads from this image host "
                "at once; retry"
            )
        self._per_host[key] = self._per_host.get(key, 0) + 1
        try:
            yield
        finally:
            self._per_host[key] -= 1
            if not self._per_host[key]:
                del self._per_host[key]


def host_key(address: IPAddress) -> str:
    """An IPv4 address, or an IPv6 address's /64 (one host may hold all of it)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)
