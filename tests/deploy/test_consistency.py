"""Compose, manifests, Dockerfiles, push script and docs agree with each other and the apps.

Every command line a deployment file gives a server is parsed by the real
``clothing`` parser and turned into the app's validated settings, so a renamed
flag or a bad value fails here rather than in a crash-looping pod.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from clothing.cli import build_parser
from clothing.gateway.app import create_app
from clothing.gateway.cli import settings_from_args
from clothing.gateway.model_client import grpc_target
from clothing.gateway.settings import GatewaySettings
from clothing.model_server.cli import config_from_args
from clothing.model_server.config import ServerConfig
from clothing.serving_layout import SHIPPED_MODEL_SERVER_FLAGS
from clothing.up import _children
from tests.deploy.manifests import (
    DOCS,
    IMAGES,
    OVERLAYS,
    PUSH_SCRIPT,
    ROOT,
    compose,
    container,
    dockerfile,
    dockerfile_instructions,
    env_of,
    find,
    rendered,
)

ALL = ["base", *(f"overlays/{name}" for name in OVERLAYS)]


def server_config(args: list[str], env: dict[str, str]) -> ServerConfig:
    parsed = build_parser().parse_args(["model-server", *args])
    return config_from_args(parsed, env)


def gateway_settings(
    args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> GatewaySettings:
    # The gateway's flags take their defaults from the environment when the parser is built.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parsed = build_parser().parse_args(["gateway", *args])
    return settings_from_args(parsed)


def _docker_env(name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in dockerfile_instructions(name):
        if keyword == "FROM":
            env = {}  # each stage starts afresh; the last one is the image
        elif keyword == "ENV":
            for pair in args.split():
                key, _, value = pair.partition("=")
                env[key] = value
    return {k: v for k, v in env.items() if k != "PATH"}


def _docker_cmd(name: str) -> list[str]:
    return list(json.loads(dict(dockerfile_instructions(name))["CMD"]))


def test_app_defaults_are_the_agreed_ports() -> None:
    defaults = build_parser().parse_args(["model-server"])
    assert (defaults.port, defaults.rest_api_port) == (8500, 8501)
    settings = GatewaySettings()
    assert settings.port == 9696
    assert settings.tf_serving_host == "localhost:8500"
    assert settings.model_name == "clothing-model"


def test_dockerfile_commands_parse() -> None:
    config = server_config(_docker_cmd("model-server"), _docker_env("model-server"))
    assert (config.host, config.port, config.rest_api_port) == ("0.0.0.0", 8500, 8501)
    (model,) = config.models
    assert (model.name, str(model.base_path)) == ("clothing-model", "/models/clothing-model-int8")


def test_gateway_dockerfile_command_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = gateway_settings(_docker_cmd("gateway"), _docker_env("gateway"), monkeypatch)
    assert (settings.host, settings.port) == ("0.0.0.0", 9696)


def test_compose_commands_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()["services"]
    server = services["model-server"]
    config = server_config(server["command"], server["environment"])
    assert config.port == 8500
    assert set(SHIPPED_MODEL_SERVER_FLAGS) <= set(server["command"])
    assert config.batching is not None
    gateway = services["gateway"]
    settings = gateway_settings(gateway["command"], gateway["environment"], monkeypatch)
    assert settings.tf_serving_host == f"model-server:{config.port}"
    assert grpc_target(settings.tf_serving_host) == "model-server:8500"


@pytest.mark.parametrize("directory", ALL)
def test_manifest_commands_parse(directory: str, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = rendered(directory)
    server = container(find(docs, "Deployment", "model-server"))
    config = server_config(server["args"], env_of(server))
    declared = {port["name"]: port["containerPort"] for port in server["ports"]}
    assert declared == {"grpc": config.port, "http": config.rest_api_port}
    assert dict(config.grpc_channel_arguments)["grpc.max_connection_age_ms"] == 30000
    assert set(SHIPPED_MODEL_SERVER_FLAGS) <= set(server["args"])
    assert config.batching is not None
    gateway = container(find(docs, "Deployment", "gateway"))
    settings = gateway_settings(gateway["args"], env_of(gateway), monkeypatch)
    assert {port["name"]: port["containerPort"] for port in gateway["ports"]} == {
        "http": settings.port,
        "metrics": settings.metrics_port,
    }
    target = grpc_target(settings.tf_serving_host)
    assert target.startswith("dns:///")
    assert target.endswith(f":{config.port}")
    assert settings.model_name == config.models[0].name


class _ComposeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading Compose's ``!reset`` tag as an empty value."""


_ComposeLoader.add_constructor("!reset", lambda _loader, _node: None)


def test_scale_out_compose_keeps_the_shipped_flags() -> None:
    overlay = yaml.load((ROOT / "docker-compose.scale-out.yaml").read_text(), Loader=_ComposeLoader)
    command = overlay["services"]["model-server"]["command"]
    assert set(SHIPPED_MODEL_SERVER_FLAGS) <= set(command)
    assert (
        server_config(command, {"MODEL_NAME": "m", "MODEL_BASE_PATH": "/models/m"}).batching
        is not None
    )


def test_clothing_up_gives_the_shipped_flags() -> None:
    args = build_parser().parse_args(["up", "--model-base-path", "models/clothing-model-int8"])
    (_, server, _), _ = _children(args)
    parsed = build_parser().parse_args(server[server.index("model-server") :])
    assert set(SHIPPED_MODEL_SERVER_FLAGS) <= set(server)
    assert config_from_args(parsed, {}).batching is not None


def _routes(app: Any) -> set[str]:
    return {route.path for route in app.routes}


@pytest.mark.parametrize("directory", ALL)
def test_gateway_probe_paths_are_routes(directory: str) -> None:
    routes = _routes(create_app(GatewaySettings()))
    spec = container(find(rendered(directory), "Deployment", "gateway"))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert spec[probe]["httpGet"]["path"] in routes
    annotations = find(rendered(directory), "Deployment", "gateway")["spec"]["template"]
    # Metrics have a port of their own, which the public Service does not expose.
    scrape = annotations["metadata"]["annotations"]
    assert scrape["prometheus.io/path"] == "/metrics"
    assert int(scrape["prometheus.io/port"]) == GatewaySettings().metrics_port
    assert "/metrics" not in routes


def test_gateway_health_check_paths_are_routes() -> None:
    routes = _routes(create_app(GatewaySettings()))
    health = dict(dockerfile_instructions("gateway"))["HEALTHCHECK"]
    match = re.search(r":9696(/\w+)", health)
    assert match
    assert match.group(1) in routes
    compose_check = compose()["services"]["gateway"]["healthcheck"]["test"][-1]
    match = re.search(r":9696(/\w+)", compose_check)
    assert match
    assert match.group(1) in routes
    assert {"/predict", "/predict/batch", "/"} <= routes


def test_push_script_pushes_the_project_images() -> None:
    script = PUSH_SCRIPT.read_text()
    match = re.search(r"^readonly IMAGES=\(([^)]*)\)", script, re.MULTILINE)
    assert match
    names = match.group(1).split()
    assert {f"{name}:0.1.0" for name in names} == set(IMAGES.values())
    # Tagged by commit, never by the fixed version (test_image_tags.py).
    assert re.search(r'tag="\$\{IMAGE_TAG:-\$\("\$\{repo_root\}/deploy/image-tag\.sh"\)\}"', script)


def test_docs_name_the_same_images_and_files() -> None:
    text = DOCS.read_text()
    for image in IMAGES.values():
        assert image in text
    for path in (
        "deploy/kind/cluster.yaml",
        "deploy/k8s/overlays/kind",
        "deploy/k8s/overlays/eks",
        "deploy/k8s/metrics-server",
        "deploy/eks/cluster.yaml",
        "deploy/eks/push-images.sh",
        "deploy/docker/model-server.Dockerfile",
        "deploy/docker/gateway.Dockerfile",
    ):
        assert path in text, path
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile("model-server"), re.MULTILINE)
    assert base
    assert f"`{base.group(1)}`" in text
    # Every other image reference in the docs is one of ours.
    for found in re.findall(r"clothing-classifier/[\w-]+:[\w.]+", text):
        assert found in IMAGES.values(), found
