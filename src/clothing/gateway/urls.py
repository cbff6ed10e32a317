"""Strict parsing of the image URLs clients send and image hosts redirect to.

A URL is split with :func:`urllib.parse.urlsplit`, but every part the gateway
acts on is checked here rather than trusted to its leniency:

- no control characters (``urlsplit`` would silently drop tabs and newlines),
  no lone surrogates, no leading or trailing whitespace, no backslashes (browsers read ``\\`` as
  ``/``, so ``http://a\\@b/`` would name another host to them than to us);
- only ``http`` and ``https``; an authority (``//host``) is required and may
  hold no credentials, not even an empty ``@``;
- the host is an IPv6 literal without a zone, a dotted IPv4 address
  :mod:`ipaddress` accepts, or a name of letters, digits, ``-`` and ``_``
  in labels of 1 to 63 characters, 253 in all. Percent-encoded names are
  refused; a non-ASCII name becomes its IDNA A-label form (IDNA 2008, the
  ``idna`` package) and an ``xn--`` label must decode. The host is kept in
  ASCII, the one form that is resolved, checked, sent as ``Host`` and as SNI;
- the port, if any, is 1 to 65535 in at most five digits;
- the path and query are percent-encoded to printable ASCII, so nothing but a
  valid request target can reach the request line.

Numeric spellings the system resolver also reads as addresses (``127.1``,
``2130706433``, ``0x7f000001``) are names here; the address policy judges the
addresses they resolve to (:mod:`.addresses`).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import idna

from clothing.gateway.errors import AddressRefused, BadRequest

DEFAULT_PORTS = {"http": 80, "https": 443}
# Longer than any URL a client may send (the schema's 4096) and any image host's
# sane redirect; it also bounds the IDNA work one URL can cost.
MAX_URL_CHARS = 8192
MAX_HOST_CHARS = 253
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_DOTTED_QUAD = re.compile(r"[0-9]+(\.[0-9]+){3}\.?")
# Characters kept as they are in a request target (RFC 3986 pchar, "/" and "?"
# for the query, and "%" so existing escapes stay); everything else is escaped.
_PATH_SAFE = "/%:@!$&'()*+,;="
_QUERY_SAFE = _PATH_SAFE + "?"
# Unicode categories refused anywhere: control characters, and lone surrogates
# (JSON can carry them; no encoding can).
_REFUSED_CATEGORIES = {"Cc": "a control character", "Cs": "a lone surrogate"}


@dataclass(frozen=True)
class ImageUrl:
    """A checked http(s) URL in the one form the gateway uses."""

    scheme: str  # "http" or "https"
    host: str  # ASCII: a lower-case name (A-labels) or an IP address without brackets
    port: int | None  # None: the scheme's default port
    target: str  # path and query, percent-encoded ASCII, as sent in the request line

    @property
    def connect_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.scheme]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def tls_name(self) -> str | None:
        """The name TLS sends as SNI and checks the certificate against; None for http."""
        return self.host if self.scheme == "https" else None

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.target}"

    def join(self, reference: str) -> ImageUrl:
        """The URL a ``Location`` header points to, relative to this one, checked alike."""
        _check_characters(reference)
        try:
            joined = urljoin(str(self), reference)
        except ValueError as error:  # e.g. an unbalanced "[" in the reference's host
            raise BadRequest(f"not a valid URL: {error}") from None
        return parse_image_url(joined)


def parse_image_url(raw: str) -> ImageUrl:
    """Check a client-supplied URL and normalise it (no network access).

    :class:`AddressRefused` for a scheme other than http(s), :class:`BadRequest`
    for anything else that is wrong.
    """
    if not isinstance(raw, str):
        raise BadRequest("not a valid URL: not a string")
    _check_characters(raw)
    try:
        parts = urlsplit(raw)
    except ValueError as error:  # unbalanced brackets, NFKC tricks in the authority
        raise BadRequest(f"not a valid URL: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise AddressRefused(f"URL scheme {scheme or '(none)'!r} is refused; use http or https")
    if not parts.netloc:
        raise BadRequest("URL has no host")
    if "@" in parts.netloc:
        raise BadRequest("credentials in the URL are not accepted")
    host, port = _host_and_port(parts.netloc)
    if port == DEFAULT_PORTS[scheme]:
        port = None
    return ImageUrl(scheme, host, port, _target(parts.path, parts.query))


def _check_characters(raw: str) -> None:
    if len(raw) > MAX_URL_CHARS:
        raise BadRequest(f"URL is longer than {MAX_URL_CHARS} characters")
    for position, char in enumerate(raw):
        refused = _REFUSED_CATEGORIES.get(unicodedata.category(char))
        if refused:
            raise BadRequest(f"URL has {refused} ({char!r}) at position {position}")
    if raw != raw.strip():
        raise BadRequest("URL starts or ends with whitespace")
    if "\\" in raw:
        raise BadRequest("backslashes are not accepted in URLs")


def _host_and_port(authority: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        literal, _, rest = authority[1:].partition("]")
        host = _ipv6_literal(literal)
        if rest and not rest.startswith(":"):
            raise BadRequest("not a valid URL: text after the IPv6 address")
        port_text = rest[1:]
    else:
        name, _, port_text = authority.partition(":")
        if ":" in port_text:
            raise BadRequest("not a valid URL: more than one ':' in the host")
        host = ascii_host_name(name)
    return host, _port(port_text)


def _ipv6_literal(literal: str) -> str:
    if "%" in literal:
        raise BadRequest("IPv6 zone identifiers are not accepted in URLs")
    try:
        return str(ipaddress.IPv6Address(literal))
    except ValueError:
        raise BadRequest(f"not a valid IPv6 address: [{literal}]") from None


def _port(text: str) -> int | None:
    if not text:
        return None  # "host:" is the default port (RFC 3986)
    if len(text) > 5 or not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise BadRequest(f"URL port {text[:8]!r} is not a number from 1 to 65535")
    return int(text)


def ascii_host_name(name: str) -> str:
    """A host name in the ASCII form resolved and compared: lower case, IDNA A-labels.

    :class:`BadRequest` for an empty, overlong, percent-encoded or malformed name.
    """
    if not name:
        raise BadRequest("URL has no host")
    if len(name) > MAX_HOST_CHARS + 1:  # an A-label is never shorter than its U-label
        raise BadRequest(f"host name is longer than {MAX_HOST_CHARS} characters")
    if "%" in name:
        raise BadRequest("percent-encoded host names are not accepted")
    lowered = name.lower()
    if not lowered.isascii():
        try:
            lowered = idna.encode(lowered).decode("ascii")
        except (idna.IDNAError, UnicodeError) as error:
            raise BadRequest(f"not a valid international host name: {error}") from None
    labels = lowered.removesuffix(".").split(".")
    if len(lowered.removesuffix(".")) > MAX_HOST_CHARS:
        raise BadRequest(f"host name is longer than {MAX_HOST_CHARS} characters")
    for label in labels:
        _check_label(label)
    if _DOTTED_QUAD.fullmatch(lowered):
        try:
            ipaddress.IPv4Address(lowered.removesuffix("."))
        except ValueError:
            raise BadRequest(f"not a valid IPv4 address: {lowered}") from None
    return lowered


def _check_label(label: str) -> None:
    if not _LABEL.fullmatch(label):
        shown = label if len(label) <= 63 else label[:20] + "..."
        raise BadRequest(f"host name label {shown!r} is not 1 to 63 letters, digits, '-' or '_'")
    if label.startswith("xn--"):
        try:
            idna.decode(label)
        except (idna.IDNAError, UnicodeError):
            raise BadRequest(f"host name label {label!r} is not valid IDNA") from None


def _target(path: str, query: str) -> str:
    target = quote(path or "/", safe=_PATH_SAFE)
    return f"{target}?{quote(query, safe=_QUERY_SAFE)}" if query else target
