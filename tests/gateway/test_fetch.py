import ipaddress
import ssl
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import pytest

from clothing.gateway.addresses import AddressPolicy, AllowList, resolve_with_getaddrinfo
from clothing.gateway.errors import (
    AddressRefused,
    BadRequest,
    ImageHostFailed,
    TooLarge,
    UpstreamTimeout,
)
from clothing.gateway.fetch import FetchLimits, ImageFetcher, new_image_client
from clothing.gateway.http_get import HttpGetter
from tests.environment import tool
from tests.images import jpeg

from .helpers import Route, serve_images

IMAGE = jpeg()


def routes() -> dict[str, Route]:
    return {
        "/a.jpg": Route(IMAGE, headers={"Content-Type": "text/plain"}),
        "/to-a": Route(status=302, headers={"Location": "/a.jpg"}),
        "/to-metadata": Route(status=302, headers={"Location": "http://169.254.169.254/latest"}),
        "/r1": Route(status=301, headers={"Location": "/r2"}),
        "/r2": Route(status=307, headers={"Location": "/r3"}),
        "/r3": Route(status=308, headers={"Location": "/r4"}),
        "/r4": Route(status=302, headers={"Location": "/a.jpg"}),
        "/big": Route(b"x" * 5000),
        "/big-chunked": Route(b"x" * 5000, chunked=True),
        "/slow": Route(b"y" * 100, trickle_seconds=0.3),
        "/no-location": Route(status=302),
    }


@pytest.fixture
def server():
    with serve_images(routes()) as running:
        yield running


def mapped(names: dict[str, str]):
    """A resolver for made-up names; anything else goes to the system resolver."""

    async def resolve(host: str, port: int):
        if host in names:
            return [ipaddress.ip_address(names[host])]
        return await resolve_with_getaddrinfo(host, port)

    return resolve


ANY_PORT = frozenset(range(1, 65536))


def fetcher(
    client: HttpGetter,
    allow: Sequence[str] = (),
    names: dict[str, str] | None = None,
    **limits: Any,
) -> ImageFetcher:
    policy = AddressPolicy(AllowList.parse(allow), mapped(names or {}))
    # The test servers listen on random ports: every port is a fetch port here.
    defaults = {"max_bytes": 4096, "total_timeout": 5.0, "ports": ANY_PORT}
    return ImageFetcher(client, policy, FetchLimits(**{**defaults, **limits}))


@pytest.fixture
def client() -> HttpGetter:
    return new_image_client(FetchLimits())


async def test_allow_listed_address_is_fetched(client, server):
    result = await fetcher(client, ["127.0.0.1"]).fetch(server.url("/a.jpg"))
    assert result.content == IMAGE
    assert result.redirects == 0


async def test_connects_to_checked_address_and_keeps_host_header(client, server):
    # images.test exists only in our resolver: success proves no second lookup happens.
    result = await fetcher(client, ["images.test"], {"images.test": "127.0.0.1"}).fetch(
        server.url("/to-a", host="images.test")
    )
    assert result.content == IMAGE
    assert result.url == server.url("/a.jpg", host="images.test")
    assert server.host_headers == [f"images.test:{server.port}"] * 2


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/a.jpg",
        "http://localhost:{port}/a.jpg",
        "http://[::1]:{port}/a.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:{port}/a.jpg",
        "http://2130706433:{port}/a.jpg",
        "http://0x7f000001:{port}/a.jpg",
        "http://[::ffff:127.0.0.1]:{port}/a.jpg",
        "http://[::ffff:a9fe:a9fe]/latest",
        "http://10.0.0.1/a.jpg",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{port}/_GET",
        "ftp://127.0.0.1/a.jpg",
    ],
)
async def test_private_targets_and_other_schemes_are_refused(client, server, url):
    with pytest.raises(AddressRefused):
        await fetcher(client).fetch(url.format(port=server.port))
    assert server.host_headers == []


async def test_redirect_to_a_private_address_is_refused_at_that_hop(client, server):
    allowed = fetcher(client, ["images.test"], {"images.test": "127.0.0.1"})
    with pytest.raises(AddressRefused, match="metadata"):
        await allowed.fetch(server.url("/to-metadata", host="images.test"))
    with pytest.raises(AddressRefused, match="loopback"):
        # 127.0.0.1 itself is not allow-listed, only the name images.test.
        await allowed.fetch(server.url("/a.jpg", host="127.0.0.1"))


async def test_more_than_three_redirects_fail(client, server):
    with pytest.raises(ImageHostFailed, match="redirects"):
        await fetcher(client, ["127.0.0.1"]).fetch(server.url("/r1"))
    result = await fetcher(client, ["127.0.0.1"], max_redirects=4).fetch(server.url("/r1"))
    assert result.content == IMAGE
    assert result.redirects == 4


async def test_announced_body_over_the_cap_is_refused(client, server):
    with pytest.raises(TooLarge, match="5000 bytes"):
        await fetcher(client, ["127.0.0.1"]).fetch(server.url("/big"))


async def test_streamed_body_over_the_cap_is_cut(client, server):
    with pytest.raises(TooLarge, match="over the limit"):
        await fetcher(client, ["127.0.0.1"]).fetch(server.url("/big-chunked"))


async def test_trickling_server_times_out_on_the_total_deadline(client, server):
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await fetcher(client, ["127.0.0.1"], total_timeout=1.0).fetch(server.url("/slow"))
    assert time.monotonic() - started < 2.0


async def test_error_status_and_bad_redirect_are_host_failures(client, server):
    with pytest.raises(ImageHostFailed, match="404"):
        await fetcher(client, ["127.0.0.1"]).fetch(server.url("/missing"))
    with pytest.raises(ImageHostFailed, match="Location"):
        await fetcher(client, ["127.0.0.1"]).fetch(server.url("/no-location"))


async def test_closed_port_is_a_host_failure(client):
    with pytest.raises(ImageHostFailed):
        await fetcher(client, ["127.0.0.1"]).fetch("http://127.0.0.1:9/a.jpg")


@pytest.mark.parametrize("url", ["not a url", "http://", "http://user:pw@127.0.0.1/a.jpg"])
async def test_malformed_urls_are_bad_requests(client, url):
    with pytest.raises((BadRequest, AddressRefused)):
        await fetcher(client).fetch(url)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    openssl = tool("openssl", "apt-get install openssl")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
            "-subj", "/CN=images.test", "-addext", "subjectAltName=DNS:images.test",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return folder / "cert.pem", folder / "key.pem"


async def test_https_uses_the_name_for_sni_and_certificate_checks(tls_files):
    cert, key = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    trust = ssl.create_default_context(cafile=str(cert))
    names = {"images.test": "127.0.0.1", "impostor.test": "127.0.0.1"}
    with serve_images(routes(), tls=server_context) as server:
        good = fetcher(HttpGetter(tls=trust), ["127.0.0.1"], names)
        result = await good.fetch(server.url("/a.jpg", host="images.test"))
        assert result.content == IMAGE
        with pytest.raises(ImageHostFailed):
            # Same IP, but the certificate does not name impostor.test.
            await good.fetch(server.url("/a.jpg", host="impostor.test"))
