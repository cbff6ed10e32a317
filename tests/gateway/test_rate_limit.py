"""The per-client rate limit, the trusted proxies and the keep-alive timeout.

The buckets on their own with a clock the test moves; then a real ``clothing
gateway`` process reached from two loopback addresses (127.0.0.2 and 127.0.0.3),
one greedy and one polite, and through a proxy that it does or does not trust.
"""

from __future__ import annotations

import base64
import http.client
import time
from collections.abc import Iterator

import httpx
import pytest

from clothing.gateway.ratelimit import ClientBuckets, client_key, exempt, retry_after_seconds
from clothing.gateway.settings import GatewaySettings
from tests.fixtures import GatewayProcess, ModelServerProcess, run_gateway
from tests.images import jpeg

GREEDY, POLITE, PROXY = "127.0.0.2", "127.0.0.3", "127.0.0.4"
RATE, BURST = 2, 3
BODY = {"image_b64": base64.b64encode(jpeg()).decode()}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    buckets = ClientBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token comes back every 0.5 s
    assert buckets.take("b") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    clock.now += 60  # a long pause refills to the burst, no further
    assert [buckets.take("a") for _ in range(4)][-1] > 0


def test_memory_is_bounded_however_many_clients() -> None:
    clock = Clock()
    buckets = ClientBuckets(rate=1.0, burst=1, max_clients=100, clock=clock)
    for index in range(10_000):
        buckets.take(f"10.0.{index // 256}.{index % 256}")
    assert len(buckets) == 100
    # The client seen last is still tracked: its bucket is empty.
    assert buckets.take("10.0.39.15") > 0


def test_ipv6_clients_count_per_64_network() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key(None) == "unknown"


def test_the_page_static_files_and_health_are_exempt() -> None:
    assert all(exempt(path) for path in ("/", "/healthz", "/readyz", "/metrics", "/static/app.js"))
    assert not any(exempt(path) for path in ("/predict", "/predict/batch", "/docs"))


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after_seconds(w) for w in (0.01, 1.0, 1.2)] == [1, 1, 2]


def test_settings_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        GatewaySettings(rate_limit=-1)
    with pytest.raises(ValueError, match="rate_burst"):
        GatewaySettings(rate_burst=0)
    with pytest.raises(ValueError, match="forwarded_allow_ips"):
        GatewaySettings(forwarded_allow_ips=("10.0.0.0/33",))
    assert GatewaySettings(rate_limit=0).client_buckets() is None
    # On by default, with room a person on the page never uses up.
    assert GatewaySettings().rate_limit >= 5
    assert GatewaySettings().rate_burst >= 20


@pytest.fixture(scope="module")
def limited(session_model_server: ModelServerProcess) -> Iterator[GatewayProcess]:
    with run_gateway(
        session_model_server.grpc_address,
        f"--rate-limit={RATE}",
        f"--rate-burst={BURST}",
        f"--forwarded-allow-ips={PROXY}",
    ) as gateway:
        yield gateway


def _client(source: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30)


def _limited_total(gateway: GatewayProcess) -> float:
    text = httpx.get(f"{gateway.url}/metrics", timeout=30).text
    (line,) = [x for x in text.splitlines() if x.startswith("gateway_rate_limited_requests_total")]
    return float(line.split()[-1])


def test_the_greedy_client_gets_429_and_the_polite_one_is_served(limited: GatewayProcess) -> None:
    refused_before = _limited_total(limited)
    with _client(GREEDY) as greedy, _client(POLITE) as polite:
        answers = [greedy.post(f"{limited.url}/predict", json=BODY) for _ in range(BURST + 5)]
        codes = [answer.status_code for answer in answers]
        assert codes[:BURST] == [200] * BURST, codes
        refusals = [answer for answer in answers if answer.status_code == 429]
        assert len(refusals) >= 4, codes
        for refusal in refusals:
            assert refusal.json()["error"]["code"] == "rate_limited"
            assert int(refusal.headers["Retry-After"]) >= 1
        # While the greedy client is refused, the page, its files and health still answer it.
        for path in ("/", "/static/app.js", "/healthz", "/readyz"):
            assert greedy.get(f"{limited.url}{path}").status_code == 200, path
        # The polite client, on another address, is served at once.
        assert polite.post(f"{limited.url}/predict", json=BODY).status_code == 200
        # The greedy one is served again once its bucket has refilled.
        time.sleep(1 / RATE + 0.2)
        assert greedy.post(f"{limited.url}/predict", json=BODY).status_code == 200
    assert _limited_total(limited) - refused_before == len(refusals)


def test_a_trusted_proxy_names_the_client_and_no_one_else_can(limited: GatewayProcess) -> None:
    with _client(PROXY) as proxy, _client(POLITE) as stranger:

        def via_proxy(client: str) -> int:
            headers = {"X-Forwarded-For": client}
            return proxy.post(f"{limited.url}/predict", json=BODY, headers=headers).status_code

        # Behind the trusted proxy, each forwarded client has a bucket of its own.
        assert [via_proxy("203.0.113.7") for _ in range(BURST + 1)][-1] == 429
        assert via_proxy("198.51.100.9") == 200
        # Anyone else's X-Forwarded-For is ignored: a spoofed header buys no fresh bucket.
        time.sleep(BURST / RATE + 0.2)  # the stranger's own bucket is full again
        spoofed = [
            stranger.post(
                f"{limited.url}/predict", json=BODY, headers={"X-Forwarded-For": f"192.0.2.{i}"}
            ).status_code
            for i in range(BURST + 1)
        ]
        assert spoofed[-1] == 429, spoofed


def _idle_connection_closed_after(gateway: GatewayProcess, seconds: float) -> bool:
    """Whether the gateway closed a kept-alive connection left idle for ``seconds``."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.request("GET", "/healthz")
        answer = connection.getresponse()
        assert answer.status == 200
        answer.read()  # the whole answer: what is left on the socket is the server's
        sock = connection.sock
        assert sock is not None
        time.sleep(seconds)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
            return sock.recv(4096) == b""
        except ConnectionError:
            return True
    finally:
        connection.close()


@pytest.mark.parametrize(("keep_alive", "closed"), [(1, True), (5, False)])
def test_idle_connections_last_the_keep_alive_timeout(
    session_model_server: ModelServerProcess, keep_alive: int, closed: bool
) -> None:
    with run_gateway(
        session_model_server.grpc_address, f"--keep-alive-timeout={keep_alive}"
    ) as gateway:
        assert _idle_connection_closed_after(gateway, 2.0) is closed
