"""Schemathesis against the gateway's own OpenAPI schema: no 5xx, every answer conforms.

The gateway runs in-process (its lifespan on an event loop in a thread, called
through ``httpx.ASGITransport``) in front of a real model server. URLs the
generator invents are answered by an injected resolver with a documentation
address (refused, 403) and an outbound mock transport, so no lookup or
connection leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from clothing.gateway.addresses import IPAddress
from clothing.gateway.app import create_app
from clothing.gateway.http_get import HttpGetter
from clothing.gateway.settings import GatewaySettings
from tests.fixtures import build_test_model, run_model_server

from .helpers import MODEL

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# The schema is the same whatever the settings; this app only describes it.
schema = schemathesis.openapi.from_dict(create_app(GatewaySettings()).openapi())


async def documentation_address(host: str, port: int) -> list[IPAddress]:
    return [ipaddress.ip_address("192.0.2.10")]


async def never_called(
    host: str, port: int, **options: Any
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    raise AssertionError(f"the gateway connected to {host}:{port}")


class InProcessGateway:
    """The app with its lifespan on a private event loop; ``request`` is synchronous."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.client: httpx.AsyncClient | None = None
        self._stack = contextlib.AsyncExitStack()

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    async def _open(self) -> None:
        await self._stack.enter_async_context(self.app.router.lifespan_context(self.app))
        transport = httpx.ASGITransport(app=self.app)
        self.client = await self._stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30)
        )

    def __enter__(self) -> InProcessGateway:
        self.thread.start()
        self._run(self._open())
        return self

    def __exit__(self, *exc: object) -> None:
        self._run(self._stack.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def request(self, **kwargs: Any) -> httpx.Response:
        assert self.client is not None
        client = self.client

        async def send() -> httpx.Response:
            response = await client.request(**kwargs)
            await response.request.aread()  # the schema checks look at what was sent
            return response

        return self._run(send())


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    base = tmp_path_factory.mktemp("schema") / MODEL
    build_test_model(base / "1")
    with run_model_server(base) as server:
        app = create_app(
            GatewaySettings(tf_serving_host=server.grpc_address, max_batch=4),
            image_client=HttpGetter(open_connection=never_called),
            resolver=documentation_address,
        )
        with InProcessGateway(app) as running:
            yield running


def _file_part(name: str, value: Any) -> tuple[str, Any]:
    """requests accepts any value in a file tuple; httpx wants bytes or str."""
    if isinstance(value, tuple):
        filename, content, *rest = value
        if not isinstance(content, bytes | str):
            content = str(content)
        return name, (filename, content, *rest)
    return name, value if isinstance(value, bytes | str) else str(value)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_gateway_conforms_to_its_schema(
    case: schemathesis.Case[Any], gateway: InProcessGateway
) -> None:
    kwargs = case.as_transport_kwargs(base_url="http://gateway")
    # requests-style arguments: httpx takes cookies as a header.
    cookies = kwargs.pop("cookies", None) or {}
    if cookies:
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        kwargs["headers"] = {**(kwargs.get("headers") or {}), "Cookie": cookie}
    if kwargs.get("files"):
        kwargs["files"] = [_file_part(name, value) for name, value in kwargs["files"]]
    if isinstance(kwargs.get("data"), bytes | str) and not kwargs.get("files"):
        kwargs["content"] = kwargs.pop("data")
    response = gateway.request(**kwargs)
    assert response.status_code < 500, (case.method, case.path, response.text)
    case.validate_response(response, checks=CHECKS)
