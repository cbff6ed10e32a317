"""Which network addresses the gateway may fetch images from.

The default is "public internet only": every address that is loopback, private,
link-local, multicast, reserved, unspecified, shared (CGNAT), documentation or a
cloud metadata endpoint is refused, for IPv4 and IPv6 alike, including IPv4
addresses smuggled inside IPv6 (IPv4-mapped, 6to4, Teredo, NAT64). An
:class:`AllowList` admits named hosts or networks on top (in-cluster image
stores, a test server on 127.0.0.1). Metadata endpoints stay refused even
inside an allow-listed network: no image lives there.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from clothing.gateway.errors import AddressRefused, BadRequest, ImageHostFailed
from clothing.gateway.urls import ascii_host_name

log = logging.getLogger("clothing.gateway")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Resolves (host, port) to every address a connection could go to.
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

# Instance metadata services: AWS/GCP/Azure/OpenStack, AWS ECS, AWS IPv6, Alibaba, Oracle legacy.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "192.0.0.192",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries and that a network path may reach."""
    found: list[ipaddress.IPv4Address] = []
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.append(address.teredo[1])
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def refusal_reason(address: IPAddress) -> str | None:
    """Why ``address`` must not be fetched from by default, or ``None`` if it is public."""
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # The socket would reach exactly this IPv4 address: judge it as one.
            return refusal_reason(address.ipv4_mapped)
        for inner in _embedded_ipv4(address):
            reason = refusal_reason(inner)
            if reason is not None:
                return f"{reason} (embedded in IPv6)"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    )
    for reason, matched in checks:
        if matched:
            return reason
    return None


@dataclass(frozen=True)
class AllowList:
    """Hosts (exact names) and networks (CIDR or single addresses) admitted despite the policy."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Build from entries like ``images.internal``, ``10.0.0.0/8``, ``127.0.0.1``, ``::1``.

        Names are kept in the form URLs are checked in (:func:`.urls.ascii_host_name`),
        so an international name matches its URLs whichever way either is spelled.
        """
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().strip("[]")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                try:
                    hosts.add(ascii_host_name(entry).rstrip("."))
                except BadRequest:
                    raise ValueError(
                        f"allow-list entry {raw!r} is neither a host nor a network"
                    ) from None
        return cls(frozenset(hosts), tuple(networks))

    def admits_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def admits_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


async def resolve_with_getaddrinfo(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives; numeric forms like ``2130706433`` included."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise ImageHostFailed(f"cannot resolve image host {host!r}") from error
    return _addresses(host, infos)


AddrInfo = tuple[Any, Any, Any, Any, tuple[Any, ...]]


def _addresses(host: str, infos: Iterable[AddrInfo]) -> list[IPAddress]:
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        # Scope ids ("fe80::1%eth0") are dropped: the address alone decides.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ImageHostFailed(f"image host {host!r} has no address")
    return addresses


def _getaddrinfo(host: str, port: int) -> list[AddrInfo]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


class BoundedResolver:
    """The system resolver on a few threads of its own, with a deadline per lookup.

    A lookup that outlives ``timeout`` fails the request at once, but its thread
    cannot be stopped: it stays counted until ``getaddrinfo`` returns. When every
    thread is busy a new lookup fails at once rather than queueing behind names
    that resolve slowly, so such names can hold at most ``threads`` threads, never
    the event loop's default executor that the rest of the process shares.
    """

    def __init__(
        self,
        threads: int = 8,
        timeout: float = 2.0,
        lookup: Callable[[str, int], list[AddrInfo]] = _getaddrinfo,
    ) -> None:
        self.timeout = timeout
        self._lookup = lookup
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="resolve")
        self._free = threads

    @property
    def busy(self) -> bool:
        return self._free == 0

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        if self._free == 0:
            raise ImageHostFailed(f"cannot resolve image host {host!r} now (resolver busy)")
        self._free -= 1
        running = asyncio.get_running_loop().run_in_executor(self._pool, self._lookup, host, port)
        running.add_done_callback(self._release)  # when the thread returns, not before
        try:
            infos = await asyncio.wait_for(asyncio.shield(running), self.timeout)
        except TimeoutError:
            raise ImageHostFailed(f"cannot resolve image host {host!r}") from None
        except (socket.gaierror, UnicodeError) as error:
            raise ImageHostFailed(f"cannot resolve image host {host!r}") from error
        return _addresses(host, infos)

    def _release(self, finished: asyncio.Future[list[AddrInfo]]) -> None:
        self._free += 1
        if not finished.cancelled():
            finished.exception()  # retrieved, so a late failure is not logged as unhandled

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class AddressPolicy:
    """Resolves a host once and decides which single address to connect to."""

    allow: AllowList = field(default_factory=AllowList)
    resolver: Resolver = resolve_with_getaddrinfo

    async def checked_address(
        self, host: str, port: int, ports: Iterable[int] | None = None
    ) -> IPAddress:
        """The address to connect to; :class:`AddressRefused` if any candidate is refused.

        Refusing when *any* resolved address is bad (not only the first) keeps a
        host with one public and one private record from being a way in.
        """
        addresses = await self.resolver(host, port)
        host_admitted = self.allow.admits_host(host)
        for address in addresses:
            reason = refusal_reason(address)
            if reason is None:
                continue
            if address in METADATA_ADDRESSES or not (
                host_admitted or self.allow.admits_address(address)
            ):
                # The client learns neither the address a name resolves to inside the
                # cluster nor which kind it is; the log keeps both.
                log.info("refused %s for %r: %s", address, host, reason)
                raise AddressRefused(
                    f"image host {host!r} is refused: not a public address",
                    detail=f"address {address} ({reason})",
                )
        # Other ports would make the gateway a port scanner of public hosts.
        port_refused = ports is not None and port not in ports and not host_admitted
        if port_refused and not all(self.allow.admits_address(a) for a in addresses):
            raise AddressRefused(f"image host {host!r} is refused: port {port} is not allowed")
        return addresses[0]
