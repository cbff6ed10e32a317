import ipaddress

import pytest

from clothing.gateway.addresses import (
    AddressPolicy,
    AllowList,
    refusal_reason,
    resolve_with_getaddrinfo,
)
from clothing.gateway.errors import AddressRefused

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.1.1",
    "100.100.100.200",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "2002:7f00:1::",
    "64:ff9b::a00:1",
    "2001:db8::1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "151.101.1.140", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("text", REFUSED)
def test_private_and_special_addresses_are_refused(text):
    assert refusal_reason(ipaddress.ip_address(text)) is not None


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_pass(text):
    assert refusal_reason(ipaddress.ip_address(text)) is None


def test_metadata_address_is_named():
    assert refusal_reason(ipaddress.ip_address("169.254.169.254")) == "cloud metadata"


def test_allow_list_parses_hosts_and_networks():
    allow = AllowList.parse(["Images.Internal.", "10.0.0.0/8", "127.0.0.1", "[::1]", " "])
    assert allow.admits_host("images.internal")
    assert not allow.admits_host("other.internal")
    assert allow.admits_address(ipaddress.ip_address("10.9.8.7"))
    assert allow.admits_address(ipaddress.ip_address("127.0.0.1"))
    assert allow.admits_address(ipaddress.ip_address("::1"))
    assert not allow.admits_address(ipaddress.ip_address("127.0.0.2"))


def test_allow_list_rejects_garbage():
    with pytest.raises(ValueError, match="neither a host nor a network"):
        AllowList.parse(["10.0.0.0/33"])


def fixed(*addresses: str):
    async def resolve(host: str, port: int):
        return [ipaddress.ip_address(a) for a in addresses]

    return resolve


async def test_one_private_record_among_public_ones_is_refused():
    policy = AddressPolicy(resolver=fixed("8.8.8.8", "10.0.0.5"))
    with pytest.raises(AddressRefused, match=r"10\.0\.0\.5"):
        await policy.checked_address("mixed.example", 80)


async def test_public_host_gets_its_first_address():
    policy = AddressPolicy(resolver=fixed("8.8.4.4", "8.8.8.8"))
    assert str(await policy.checked_address("dns.example", 80)) == "8.8.4.4"


async def test_allowed_host_may_be_private_but_never_metadata():
    allow = AllowList.parse(["images.internal", "169.254.0.0/16"])
    assert (
        str(await AddressPolicy(allow, fixed("10.0.0.7")).checked_address("images.internal", 80))
        == "10.0.0.7"
    )
    with pytest.raises(AddressRefused, match="metadata"):
        await AddressPolicy(allow, fixed("169.254.169.254")).checked_address("images.internal", 80)
    with pytest.raises(AddressRefused, match="metadata"):
        await AddressPolicy(allow, fixed("169.254.169.254")).checked_address("x.example", 80)


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1"])
async def test_numeric_host_spellings_resolve_to_loopback(host):
    addresses = await resolve_with_getaddrinfo(host, 80)
    assert addresses == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(AddressRefused, match="loopback"):
        await AddressPolicy().checked_address(host, 80)
