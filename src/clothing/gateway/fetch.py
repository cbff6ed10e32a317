"""Download an image from a URL without becoming a proxy into the private network.

Each hop (the first request and every redirect, at most ``max_redirects``):

1. only ``http`` and ``https`` URLs without credentials are accepted;
2. the host is resolved once and every address checked (:mod:`.addresses`);
3. the request goes to the checked IP itself, with the original ``Host`` header
   and, for https, the original name as SNI so certificate checks still apply
   to the name: no second DNS lookup can swap the address (DNS rebinding);
4. the body is streamed and cut at ``max_bytes`` (an announced
   ``Content-Length`` over the cap is refused before reading).

Connect and read timeouts apply per operation; a total timeout covers the whole
fetch, so a server trickling one byte a second still ends on time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from clothing.gateway.addresses import AddressPolicy
from clothing.gateway.errors import (
    AddressRefused,
    BadRequest,
    ImageHostFailed,
    TooLarge,
    UpstreamTimeout,
)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 3
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    total_timeout: float = 10.0


@dataclass
class FetchResult:
    content: bytes
    url: str  # the final URL, after redirects
    redirects: int


def new_http_client(limits: FetchLimits) -> httpx.AsyncClient:
    """The client the gateway uses by default.

    No keep-alive: a pooled connection is keyed by IP, and reusing one that was
    verified for another name on the same IP would skip that name's TLS check.
    ``trust_env=False`` so no proxy variable sends requests around the checks.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=limits.connect_timeout,
            read=limits.read_timeout,
            write=limits.read_timeout,
            pool=limits.connect_timeout,
        ),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=0),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": "clothing-gateway", "Accept": "image/*"},
    )


def parse_image_url(raw: str) -> httpx.URL:
    """Validate the shape of a client-supplied URL (no network access)."""
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError, ValueError) as error:
        raise BadRequest(f"not a valid URL: {error}") from None
    if url.scheme not in _DEFAULT_PORTS:
        raise AddressRefused(f"URL scheme {url.scheme or '(none)'!r} is refused; use http or https")
    if not url.host:
        raise BadRequest("URL has no host")
    if url.userinfo:
        raise BadRequest("credentials in the URL are not accepted")
    return url


@dataclass
class ImageFetcher:
    """Fetches image bytes through an injected ``httpx.AsyncClient``."""

    client: httpx.AsyncClient
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    limits: FetchLimits = field(default_factory=FetchLimits)

    async def fetch(self, raw_url: str) -> FetchResult:
        try:
            async with asyncio.timeout(self.limits.total_timeout):
                return await self._follow(parse_image_url(raw_url))
        except TimeoutError:
            raise UpstreamTimeout(
                f"image host did not answer within {self.limits.total_timeout:g} s"
            ) from None

    async def _follow(self, url: httpx.URL) -> FetchResult:
        for hop in range(self.limits.max_redirects + 1):
            response_or_next = await self._one_hop(url)
            if isinstance(response_or_next, bytes):
                return FetchResult(response_or_next, str(url), hop)
            url = response_or_next
        raise ImageHostFailed(f"more than {self.limits.max_redirects} redirects")

    async def _one_hop(self, url: httpx.URL) -> bytes | httpx.URL:
        """The body, or the next URL when the answer is a redirect."""
        port = url.port or _DEFAULT_PORTS[url.scheme]
        address = await self.policy.checked_address(url.host, port)
        host_header = url.netloc.decode("ascii")
        # httpx brackets an IPv6 host itself.
        target = url.copy_with(host=str(address), port=port)
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        request = self.client.build_request(
            "GET", target, headers={"Host": host_header}, extensions=extensions
        )
        try:
            response = await self.client.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException:
            raise UpstreamTimeout("image host timed out") from None
        except httpx.HTTPError as error:
            raise ImageHostFailed(f"image host failed: {type(error).__name__}") from None
        try:
            if response.status_code in _REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    raise ImageHostFailed("redirect without a Location header")
                return parse_image_url(str(url.join(location)))
            if response.status_code != 200:
                raise ImageHostFailed(f"image host answered HTTP {response.status_code}")
            return await self._read_capped(response)
        finally:
            await response.aclose()

    async def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self.limits.max_bytes
        announced = response.headers.get("Content-Length", "")
        if announced.isdigit() and int(announced) > cap:
            raise TooLarge(f"image is {int(announced)} bytes, the limit is {cap}")
        body = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > cap:
                    raise TooLarge(f"image is over the limit of {cap} bytes")
        except httpx.TimeoutException:
            raise UpstreamTimeout("image host timed out while sending") from None
        except httpx.HTTPError as error:
            raise ImageHostFailed(f"image download failed: {type(error).__name__}") from None
        return bytes(body)
