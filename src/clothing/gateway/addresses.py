"""Which network addresses the gateway may fetch images from.

The default is "public internet only": every address that is loopback, private,
link-local, multicast, reserved, unspecified, shared (CGNAT), documentation or a
cloud metadata endpoint is refused, for IPv4 and IPv6 alike, including IPv4
addresses smuggled inside IPv6 (IPv4-mapped, 6to4, Teredo, NAT64). An
:class:`AllowList` admits named hosts or networks on top (in-cluster image
stores, a test server on 127.0.0.1), on the fetch ports unless the entry names
its own port: an allow-listed network must not make the gateway a port scanner
of that network. Metadata endpoints stay refused even inside an allow-listed
network: no image lives there.

A name that does not resolve is answered like one that resolves to a refused
address, so the answers cannot tell which internal names exist; the log keeps
the difference.
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

# Instance metadata services: AWS/GCP/Azure/OpenStack, AWS ECS, AWS IPv6, Alibaba, Oracle
# legacy, and Azure's platform endpoint (WireServer: a public address that only answers
# from inside Azure, with the VM's agent and extension configuration).
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "192.0.0.192",
        "168.63.129.16",
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
        # Deprecated IPv6 site-local (fec0::/10): Python counts it neither private nor
        # reserved, and old networks still route it internally.
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
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
class AllowEntry:
    """One ``--allow-hosts`` entry: a host name or a network, and the port it names, if any."""

    host: str | None = None
    network: IPNetwork | None = None
    port: int | None = None  # None: only the fetch ports

    def matches(self, host: str, address: IPAddress) -> bool:
        if self.host is not None:
            return host.lower().rstrip(".") == self.host
        return self.network is not None and address in self.network

    def opens(self, port: int, ports: Iterable[int] | None) -> bool:
        if self.port is not None:
            return port == self.port
        return ports is None or port in ports


@dataclass(frozen=True)
class AllowList:
    """Hosts (exact names) and networks (CIDR or single addresses) admitted despite the policy,
    each on the fetch ports or on the one port the entry names."""

    entries: tuple[AllowEntry, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Build from entries like ``images.internal``, ``10.0.0.0/8``, ``127.0.0.1:8080``,
        ``::1``, ``[fd00::/8]:8443``.

        Names are kept in the form URLs are checked in (:func:`.urls.ascii_host_name`),
        so an international name matches its URLs whichever way either is spelled.
        """
        parsed = [_allow_entry(raw) for raw in entries if raw.strip()]
        return cls(tuple(parsed))

    def admits_host(self, host: str) -> bool:
        """A name entry names ``host`` (on some port)."""
        name = host.lower().rstrip(".")
        return any(e.host == name for e in self.entries)

    def admits_address(self, address: IPAddress) -> bool:
        """A network entry holds ``address`` (on some port)."""
        return any(e.network is not None and address in e.network for e in self.entries)

    def admits(self, host: str, address: IPAddress, port: int, ports: Iterable[int] | None) -> bool:
        """An entry names ``host`` or holds ``address``, and opens ``port``."""
        return any(e.matches(host, address) and e.opens(port, ports) for e in self.entries)


def _allow_entry(raw: str) -> AllowEntry:
    text = raw.strip()
    port: int | None = None
    if text.startswith("["):  # [v6 address or network] or [...]:port
        inner, _, rest = text[1:].partition("]")
        text = inner
        if rest:
            port = _entry_port(raw, rest.removeprefix(":") if rest.startswith(":") else "x")
    elif text.count(":") == 1:  # host:port or v4:port (a bare v6 address has several)
        text, port_text = text.split(":")
        port = _entry_port(raw, port_text)
    try:
        return AllowEntry(network=ipaddress.ip_network(text, strict=False), port=port)
    except ValueError:
        pass
    try:
        return AllowEntry(host=ascii_host_name(text).rstrip("."), port=port)
    except BadRequest:
        raise ValueError(f"allow-list entry {raw!r} is neither a host nor a network") from None


def _entry_port(raw: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"allow-list entry {raw!r} names no port from 1 to 65535")
    return int(text)


class Unresolvable(ImageHostFailed):
    """The name has no address (as opposed to a lookup that timed out or found no thread)."""


async def resolve_with_getaddrinfo(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives; numeric forms like ``2130706433`` included."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise Unresolvable(f"cannot resolve image host {host!r}: {error}") from None
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
        raise Unresolvable(f"image host {host!r} has no address")
    return addresses


def _getaddrinfo(host: str, port: int) -> list[AddrInfo]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def lookup_domain(host: str) -> str:
    """The domain a lookup counts against: the name without its first label when it has
    three or more (``a.b.example`` -> ``b.example``), else the name itself (and an
    address is its own)."""
    name = host.lower().rstrip(".")
    labels = name.split(".")
    if len(labels) < 3 or labels[-1].isdigit():  # a numeric address is its own domain
        return name
    return ".".join(labels[1:])


class BoundedResolver:
    """The system resolver on a few threads of its own, with a deadline per lookup.

    A lookup that outlives ``timeout`` fails the request at once, but its thread
    cannot be stopped: it stays counted until ``getaddrinfo`` returns. When every
    thread is busy a new lookup fails at once rather than queueing behind names
    that resolve slowly, so such names can hold at most ``threads`` threads, never
    the event loop's default executor that the rest of the process shares. One
    domain (a name without its first label: every ``*.slow.example`` is one) may
    hold at most a quarter of the threads, so names under a slow DNS server
    cannot take them all from everyone else.
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
        self.per_domain = max(1, threads // 4)
        self._by_domain: dict[str, int] = {}
        self._running: dict[tuple[str, int], asyncio.Future[list[AddrInfo]]] = {}

    @property
    def busy(self) -> bool:
        return self._free == 0

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        # Lookups of one name at once share a thread (a batch's URLs on one host).
        running = self._running.get((host, port)) or self._start(host, port)
        try:
            infos = await asyncio.wait_for(asyncio.shield(running), self.timeout)
        except TimeoutError:
            raise ImageHostFailed(f"cannot resolve image host {host!r}") from None
        except (socket.gaierror, UnicodeError) as error:
            raise Unresolvable(f"cannot resolve image host {host!r}: {error}") from None
        return _addresses(host, infos)

    def _start(self, host: str, port: int) -> asyncio.Future[list[AddrInfo]]:
        domain = lookup_domain(host)
        if self._free == 0 or self._by_domain.get(domain, 0) >= self.per_domain:
            raise ImageHostFailed(f"cannot resolve image host {host!r} now (resolver busy)")
        self._free -= 1
        self._by_domain[domain] = self._by_domain.get(domain, 0) + 1
        running = asyncio.get_running_loop().run_in_executor(self._pool, self._lookup, host, port)
        self._running[(host, port)] = running
        # When the thread returns, not before.
        running.add_done_callback(lambda finished: self._release(finished, host, port, domain))
        return running

    def _release(
        self, finished: asyncio.Future[list[AddrInfo]], host: str, port: int, domain: str
    ) -> None:
        self._free += 1
        del self._running[(host, port)]
        self._by_domain[domain] -= 1
        if not self._by_domain[domain]:
            del self._by_domain[domain]
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
        try:
            addresses = await self.resolver(host, port)
        except Unresolvable as error:
            log.info("refused %r: %s", host, error)
            raise _refused(host, str(error)) from None
        for address in addresses:
            reason = refusal_reason(address)
            if reason is None:
                continue
            if address in METADATA_ADDRESSES or not self.allow.admits(host, address, port, ports):
                # The client learns neither the address a name resolves to inside the
                # cluster nor which kind it is; the log keeps both.
                log.info("refused %s for %r: %s", address, host, reason)
                raise _refused(host, f"address {address} ({reason})")
        # Other ports would make the gateway a port scanner of public hosts (and of
        # allow-listed networks, unless their entry names the port).
        opened = all(self.allow.admits(host, a, port, ports) for a in addresses)
        if ports is not None and port not in ports and not opened:
            raise AddressRefused(f"image host {host!r} is refused: port {port} is not allowed")
        return addresses[0]


def _refused(host: str, detail: str) -> AddressRefused:
    """One answer for a refused address and a name that does not resolve."""
    return AddressRefused(f"image host {host!r} is refused: not a public address", detail=detail)
