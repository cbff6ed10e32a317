"""The gateway's own URL parser: what it refuses, and the one form it keeps."""

import pytest

from clothing.gateway.addresses import AllowList
from clothing.gateway.errors import AddressRefused, BadRequest
from clothing.gateway.fetch import FetchLimits, ImageFetcher
from clothing.gateway.urls import MAX_URL_CHARS, ImageUrl, ascii_host_name, parse_image_url


@pytest.mark.parametrize(
    ("raw", "scheme", "host", "port", "target"),
    [
        ("http://example.com", "http", "example.com", None, "/"),
        ("HTTP://Example.COM/A.jpg", "http", "example.com", None, "/A.jpg"),
        ("https://example.com:443/a", "https", "example.com", None, "/a"),
        ("http://example.com:80/a", "http", "example.com", None, "/a"),
        ("http://example.com:/a", "http", "example.com", None, "/a"),
        ("http://example.com:0080/a", "http", "example.com", None, "/a"),
        ("http://example.com:8080/a", "http", "example.com", 8080, "/a"),
        ("http://example.com:65535/a", "http", "example.com", 65535, "/a"),
        ("http://example.com/a b?q=1 2#frag", "http", "example.com", None, "/a%20b?q=1%202"),
        ("http://example.com/a?", "http", "example.com", None, "/a"),
        ("http://example.com/%41%zz?x=%2F", "http", "example.com", None, "/%41%zz?x=%2F"),
        ('http://example.com/<"{}|^`>', "http", "example.com", None, "/%3C%22%7B%7D%7C%5E%60%3E"),
        ("http://example.com./a", "http", "example.com.", None, "/a"),
        ("http://my_bucket.example.com/", "http", "my_bucket.example.com", None, "/"),
        # Numeric spellings stay names: the resolver turns them into addresses to check.
        ("http://127.1/a", "http", "127.1", None, "/a"),
        ("http://2130706433/a", "http", "2130706433", None, "/a"),
        ("http://0x7f000001/a", "http", "0x7f000001", None, "/a"),
        ("http://[::1]/a", "http", "::1", None, "/a"),
        ("http://[::FFFF:127.0.0.1]:8080/", "http", "::ffff:7f00:1", 8080, "/"),
        ("http://[2001:DB8:0:0::1]/", "http", "2001:db8::1", None, "/"),
        # IDNA: the A-label form is what is resolved, sent as Host and as SNI.
        (
            "https://Bücher.example/ä?ö=1",
            "https",
            "xn--bcher-kva.example",
            None,
            "/%C3%A4?%C3%B6=1",
        ),
        ("http://例え.テスト/", "http", "xn--r8jz45g.xn--zckzah", None, "/"),
        ("http://xn--bcher-kva.example/", "http", "xn--bcher-kva.example", None, "/"),
        # Ideographic and full-width full stops separate labels as "." does.
        ("http://127。0。0。1/", "http", "127.0.0.1", None, "/"),
        ("http://127．0．0．1/", "http", "127.0.0.1", None, "/"),
    ],
)
def test_accepted_urls_take_one_normal_form(raw, scheme, host, port, target):
    url = parse_image_url(raw)
    assert url == ImageUrl(scheme, host, port, target)
    assert url.target.isascii()
    assert all(0x21 <= ord(char) <= 0x7E for char in url.target)


def test_host_header_sni_and_string_form():
    url = parse_image_url("https://[::1]:8443/a?b")
    assert url.host_header == "[::1]:8443"
    assert url.connect_port == 8443
    assert url.tls_name == "::1"
    assert str(url) == "https://[::1]:8443/a?b"
    plain = parse_image_url("http://images.test/a")
    assert plain.host_header == "images.test"
    assert plain.connect_port == 80
    assert plain.tls_name is None
    assert parse_image_url(str(plain)) == plain


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # userinfo, even empty, in any spelling
        ("http://user:pw@example.com/", "credentials"),
        ("http://user@example.com/", "credentials"),
        ("http://@example.com/", "credentials"),
        ("http://:@example.com/", "credentials"),
        ("http://example.com@127.0.0.1/", "credentials"),
        ("http://a%40b@example.com/", "credentials"),
        # backslashes: browsers read them as "/", which names another host
        ("http://example.com\\@127.0.0.1/", "backslash"),
        ("http://127.0.0.1\\.example.com/", "backslash"),
        ("http://example.com/a\\b", "backslash"),
        # whitespace and control characters, anywhere
        (" http://example.com/", "whitespace"),
        ("http://example.com/ ", "whitespace"),
        ("http://example.com/\u3000", "whitespace"),
        ("http://exa\tmple.com/", "control character"),
        ("http://example.com/a\r\nX-Injected: 1", "control character"),
        ("http://example.com/a\nb", "control character"),
        ("http://example.com/\x00", "control character"),
        ("http://example.com/\x7f", "control character"),
        ("http://example.com/\x85", "control character"),
        ("\x01http://127.0.0.1/", "control character"),
        ("http://example.com/\ud800", "lone surrogate"),
        ("http://exa mple.com/", "letters, digits"),
        # odd ports
        ("http://example.com:0/", "port"),
        ("http://example.com:65536/", "port"),
        ("http://example.com:99999999999/", "port"),
        ("http://example.com:000080/", "port"),
        ("http://example.com:+80/", "port"),
        ("http://example.com:-1/", "port"),
        ("http://example.com:8o/", "port"),
        ("http://example.com:٨٠/", "port"),  # Arabic-Indic digits are digits to str.isdigit
        ("http://example.com:80:81/", "more than one ':'"),
        # IPv6 literals
        ("http://[::1/", "not a valid URL"),
        ("http://[::1]x/", "after the IPv6 address"),
        ("http://[::1%25eth0]/", "zone"),
        ("http://[fe80::1%eth0]/", "zone"),
        ("http://[127.0.0.1]/", "IPv"),
        ("http://[v1.fe]/", "IPv6"),
        ("http://[example.com]/", "IPv6"),
        ("http://::1/", "more than one ':'"),
        # percent-encoded hosts
        ("http://%31%32%37.0.0.1/", "percent-encoded"),
        ("http://ex%61mple.com/", "percent-encoded"),
        ("http://example.com%2F@x/", "credentials"),
        # dotted addresses the resolver would read otherwise (octal) or not at all
        ("http://0177.0.0.1/", "IPv4"),
        ("http://127.000.000.001/", "IPv4"),
        ("http://999.1.1.1/", "IPv4"),
        # names
        ("http://a..b/", "letters, digits"),
        ("http://.example.com/", "letters, digits"),
        ("http://example!.com/", "letters, digits"),
        ("http://exa*mple.com/", "letters, digits"),
        ("http://exa$mple.com/", "letters, digits"),
        ("http://" + "a" * 64 + ".com/", "letters, digits"),
        ("http://" + "a." * 127 + "com/", "longer than 253"),
        ("http://" + "ä" * 300 + "/", "longer than 253"),
        # IDNA
        ("http://xn--zz.example/", "IDNA"),
        ("http://ℌ.example/", "international host name"),
        ("http://exa\u200bmple.com/", "international host name"),
        ("http://\u0301a.example/", "international host name"),  # begins with a combining mark
        ("http://ex℀ample.com/", "not a valid URL"),  # NFKC would make it "a/c"
        # no authority at all
        ("http://", "no host"),
        ("http:///a.jpg", "no host"),
        ("http:example.com/a.jpg", "no host"),
        ("http://:80/", "no host"),
        # length
        ("http://example.com/" + "a" * MAX_URL_CHARS, "longer than"),
    ],
)
def test_malformed_urls_are_bad_requests(raw, message):
    with pytest.raises(BadRequest, match=message):
        parse_image_url(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.jpg",
        "gopher://127.0.0.1:70/_GET",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "//example.com/a.jpg",
        "example.com/a.jpg",
        "not a url",
        "",
    ],
)
def test_other_schemes_are_refused(raw):
    with pytest.raises(AddressRefused, match="scheme"):
        parse_image_url(raw)


@pytest.mark.parametrize(
    ("location", "joined"),
    [
        ("/b.jpg", "http://images.test:8080/b.jpg"),
        ("b.jpg?x=1", "http://images.test:8080/dir/b.jpg?x=1"),
        ("../b.jpg", "http://images.test:8080/b.jpg"),
        ("//other.test/c.jpg", "http://other.test/c.jpg"),
        ("https://Other.test:443/c.jpg", "https://other.test/c.jpg"),
        ("http://[::1]:81/", "http://[::1]:81/"),
    ],
)
def test_redirect_locations_are_joined_and_checked_alike(location, joined):
    base = parse_image_url("http://images.test:8080/dir/a.jpg")
    assert str(base.join(location)) == joined


@pytest.mark.parametrize(
    "location", ["http://[::1", "\\\\127.0.0.1/", "http://user@x/", "/a\r\nb", "http://a..b/"]
)
def test_bad_redirect_locations_are_bad_requests(location):
    with pytest.raises(BadRequest):
        parse_image_url("http://images.test/a.jpg").join(location)


def test_a_redirect_to_another_scheme_is_refused():
    with pytest.raises(AddressRefused):
        parse_image_url("http://images.test/a.jpg").join("file:///etc/passwd")


def test_allow_list_names_are_kept_in_the_form_urls_are_checked_in():
    allow = AllowList.parse(["Bücher.Example.", "xn--r8jz45g.xn--zckzah"])
    assert allow.admits_host(parse_image_url("http://bücher.example/").host)
    assert allow.admits_host(parse_image_url("http://xn--bcher-kva.example/").host)
    assert allow.admits_host(parse_image_url("http://例え.テスト/").host)
    for bad in ["a..b", "ex%61mple.com", "user@host"]:
        with pytest.raises(ValueError, match="neither a host nor a network"):
            AllowList.parse([bad])
    assert ascii_host_name("Example.COM") == "example.com"


class NeverCalled:
    """An image getter that fails the test if a refused URL reaches the network."""

    async def get(self, *_args: object, **_kwargs: object) -> object:
        raise AssertionError("a refused URL was requested")


@pytest.mark.parametrize(
    "raw",
    [
        "http://example.com\\@127.0.0.1/",
        "http://[::1%25lo]/",
        "http://%31%32%37.0.0.1/",
        "http://0177.0.0.1/",
        "http://@127.0.0.1/",
        "http://127.0.0.1/a\r\nHost: x",
        "http://127.0.0.1:0/",
    ],
)
async def test_the_fetcher_never_requests_a_malformed_url(raw):
    fetcher = ImageFetcher(NeverCalled(), limits=FetchLimits(total_timeout=2.0))  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        await fetcher.fetch(raw)
