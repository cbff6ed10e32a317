"""Kubernetes' service-link variables cannot reach the servers' settings.

For every Service in its namespace the kubelet sets ``<NAME>_SERVICE_HOST``,
``<NAME>_SERVICE_PORT``, ``<NAME>_SERVICE_PORT_<PORT NAME>``, ``<NAME>_PORT``
(``tcp://<ip>:<port>``) and ``<NAME>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]``
in each container, unless the pod says ``enableServiceLinks: false``. The
Service ``gateway`` thus sets ``GATEWAY_PORT=tcp://...``, which the gateway
once read as its own port. The pods turn the links off, and no variable either
server reads has a name the kubelet could set, whatever the Services are named.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from clothing.cli import build_parser
from clothing.gateway.cli import settings_from_args
from clothing.gateway.settings import SETTING_NAMES, GatewaySettings, env_name
from tests.deploy.kustomize import Document
from tests.deploy.manifests import OVERLAYS, ROOT, of_kind, rendered

ALL = ["base", *(f"overlays/{name}" for name in OVERLAYS)]
SERVER_SOURCES = [ROOT / "src" / "clothing" / "gateway", ROOT / "src" / "clothing" / "model_server"]

# Every name the kubelet's service links can produce, for a Service of any name.
INJECTABLE = re.compile(
    r"[A-Z][A-Z0-9_]*_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)"
)


def kubernetes_could_inject(variable: str) -> bool:
    return INJECTABLE.fullmatch(variable) is not None


def service_link_environment(services: list[Document]) -> dict[str, str]:
    """What the kubelet puts in a pod's environment for these Services (links enabled)."""
    env: dict[str, str] = {}
    for number, service in enumerate(services, start=10):
        spec = service["spec"]
        if spec.get("clusterIP") == "None":
            continue  # headless Services get no variables
        ip = f"10.96.0.{number}"
        prefix = service["metadata"]["name"].upper().replace("-", "_")
        ports: list[dict[str, Any]] = spec["ports"]
        first = ports[0]
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(first["port"])
        env[f"{prefix}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for port in ports:
            protocol = port.get("protocol", "TCP")
            if "name" in port:
                name = port["name"].upper().replace("-", "_")
                env[f"{prefix}_SERVICE_PORT_{name}"] = str(port["port"])
            key = f"{prefix}_PORT_{port['port']}_{protocol}"
            env[key] = f"{protocol.lower()}://{ip}:{port['port']}"
            env[f"{key}_PROTO"] = protocol.lower()
            env[f"{key}_PORT"] = str(port["port"])
            env[f"{key}_ADDR"] = ip
    return env


def _variables_read_in_sources() -> set[str]:
    pattern = re.compile(r"""(?:environ\.get|getenv|environ\[)\(?\s*["']([A-Z][A-Z0-9_]*)["']""")
    names: set[str] = set()
    for folder in SERVER_SOURCES:
        for path in Path(folder).rglob("*.py"):
            names |= set(pattern.findall(path.read_text()))
    return names


def test_the_pattern_matches_what_the_kubelet_sets() -> None:
    services = rendered("overlays/kind")
    injected = service_link_environment(of_kind(services, "Service"))
    assert injected["GATEWAY_PORT"].startswith("tcp://10.96.0.")
    assert "GATEWAY_SERVICE_PORT_HTTP" in injected
    assert all(kubernetes_could_inject(name) for name in injected)
    assert not kubernetes_could_inject("GATEWAY_PORT_NUMBER")
    assert not kubernetes_could_inject("TF_SERVING_HOST")


def test_no_variable_the_servers_read_could_be_set_by_kubernetes() -> None:
    read = {env_name(setting) for setting in SETTING_NAMES} | _variables_read_in_sources()
    assert {"GATEWAY_PORT_NUMBER", "GATEWAY_LOG_LEVEL", "MODEL_NAME", "MODEL_BASE_PATH"} <= read
    assert [name for name in sorted(read) if kubernetes_could_inject(name)] == []


@pytest.mark.parametrize("directory", ALL)
def test_pods_turn_service_links_off(directory: str) -> None:
    for deployment in of_kind(rendered(directory), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod.get("enableServiceLinks") is False, deployment["metadata"]["name"]


@pytest.mark.parametrize("directory", ALL)
def test_gateway_keeps_its_port_among_every_service_link(
    directory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the links on, the gateway started with no flags still listens on 9696."""
    injected = service_link_environment(of_kind(rendered(directory), "Service"))
    assert "GATEWAY_PORT" in injected
    for name, value in injected.items():
        monkeypatch.setenv(name, value)
    settings = settings_from_args(build_parser().parse_args(["gateway"]))
    assert settings.port == 9696


def test_port_from_its_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "tcp://10.0.0.1:9696")
    monkeypatch.setenv("GATEWAY_PORT_NUMBER", "8080")
    settings = settings_from_args(build_parser().parse_args(["gateway"]))
    assert settings.port == 8080


def test_a_service_link_value_as_the_port_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_PORT_NUMBER", "tcp://10.0.0.1:9696")
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["gateway"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "argument --port: 'tcp://10.0.0.1:9696' is not a port number from 1 to 65535" in message
    assert "Traceback" not in message


@pytest.mark.parametrize("port", ["tcp://10.0.0.1:9696", 0, 70000])
def test_settings_refuse_a_port_that_is_not_one(port: Any) -> None:
    with pytest.raises(ValueError, match="port must be an integer from 1 to 65535"):
        GatewaySettings(port=port)
