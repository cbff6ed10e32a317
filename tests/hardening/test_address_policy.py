"""The address policy and the redirect rules, judged without connecting anywhere.

- fec0::/10 (deprecated IPv6 site-local) and Azure's platform address 168.63.129.16
  are refused (before: both counted as public);
- a name that resolves to a private address and one that does not resolve get the
  same answer (before: 403 and 502, which told internal names apart);
- an allow-listed network is open on the fetch ports only, unless its entry names
  a port (before: any port, a port scanner of that network);
- an https URL redirected to http is refused (before: followed).
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

from clothing.gateway.addresses import (
    AddressPolicy,
    AddrInfo,
    AllowList,
    BoundedResolver,
    IPAddress,
    Resolver,
    refusal_reason,
)
from clothing.gateway.errors import AddressRefused, GatewayError, ImageHostFailed
from clothing.gateway.fetch import FetchLimits, ImageFetcher
from clothing.gateway.http_get import Lease, Response

FETCH_PORTS = frozenset({80, 443})


@pytest.mark.parametrize("text", ["fec0::1", "fec0:1:2::3", "feff::1", "168.63.129.16"])
def test_site_local_and_platform_addresses_are_refused(text: str) -> None:
    assert refusal_reason(ipaddress.ip_address(text)) is not None


def _lookup(host: str, port: int) -> list[AddrInfo]:
    if host == "internal.test":
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def _answer(policy: AddressPolicy, host: str) -> tuple[int, str]:
    try:
        await policy.checked_address(host, 80, FETCH_PORTS)
    except GatewayError as error:
        return error.status, error.message.replace(repr(host), "HOST")
    raise AssertionError(f"{host} was admitted")


async def test_a_private_name_and_an_unresolvable_one_are_answered_alike() -> None:
    resolver = BoundedResolver(threads=2, timeout=2.0, lookup=_lookup)
    try:
        policy = AddressPolicy(resolver=resolver)
        private = await _answer(policy, "internal.test")
        missing = await _answer(policy, "missing.test")
    finally:
        resolver.close()
    print(f"private name: {private}; unresolvable name: {missing}")
    assert private == missing


def _fixed(address: str) -> Resolver:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(address)]

    return resolve


@pytest.mark.parametrize(
    ("entries", "port", "admitted"),
    [
        (["10.0.0.0/8"], 80, True),
        (["10.0.0.0/8"], 22, False),
        (["10.0.0.0/8"], 6379, False),
        (["10.1.2.3"], 8080, False),
        (["images.internal"], 5432, False),
        (["10.0.0.0/8:8080"], 8080, True),
        (["10.0.0.0/8:8080"], 80, False),  # an entry with a port opens that port only
        (["10.1.2.3:8080", "10.0.0.0/8"], 80, True),
        (["images.internal:9000"], 9000, True),
    ],
)
async def test_an_allow_listed_network_is_open_on_the_fetch_ports_only(
    entries: list[str], port: int, admitted: bool
) -> None:
    policy = AddressPolicy(AllowList.parse(entries), _fixed("10.1.2.3"))
    try:
        await policy.checked_address("images.internal", port, FETCH_PORTS)
        outcome = True
    except AddressRefused:
        outcome = False
    assert outcome is admitted


def test_an_ipv6_entry_names_its_port_in_brackets() -> None:
    (entry,) = AllowList.parse(["[fd00::/8]:8443"]).entries
    assert (entry.network, entry.port) == (ipaddress.ip_network("fd00::/8"), 8443)
    (bare,) = AllowList.parse(["fd00::1"]).entries
    assert bare.port is None


class _Redirecting:
    """An image host that answers every request with a redirect to ``location``."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.requests: list[tuple[str | None, str]] = []

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
    ) -> Response:
        self.requests.append((tls_name, target))
        if target == "/start":
            return Response(302, {"location": self.location}, b"")
        return Response(200, {}, b"image")


async def test_https_is_never_redirected_to_http() -> None:
    public = AddressPolicy(resolver=_fixed("93.184.216.34"))
    to_http = _Redirecting("http://images.example/next")
    fetcher = ImageFetcher(to_http, public, FetchLimits())
    with pytest.raises(ImageHostFailed, match="https to http"):
        await fetcher.fetch("https://images.example/start")
    assert to_http.requests == [("images.example", "/start")]
    # https to https, and http to https, still follow.
    for start, location in [
        ("https://images.example/start", "https://cdn.example/next"),
        ("http://images.example/start", "https://cdn.example/next"),
    ]:
        result = await ImageFetcher(_Redirecting(location), public, FetchLimits()).fetch(start)
        assert result.content == b"image"
