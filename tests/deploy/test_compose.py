"""docker-compose.yaml: two services wired together, health-gated, on the agreed ports."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.deploy.manifests import (
    COMPOSE_FILE,
    IMAGES,
    ROOT,
    compose,
    container,
    find,
    flag_value,
    rendered,
)
from tests.environment import require, tool


def test_services_build_the_project_images() -> None:
    services = compose()["services"]
    assert set(services) == {"model-server", "gateway"}
    for name, service in services.items():
        assert service["image"] == IMAGES[name]
        assert service["build"]["context"] == "."
        assert (ROOT / service["build"]["dockerfile"]).is_file()
        assert service["build"]["dockerfile"] == f"deploy/docker/{name}.Dockerfile"


def test_gateway_reaches_the_model_server_by_service_name() -> None:
    services = compose()["services"]
    host = services["gateway"]["environment"]["TF_SERVING_HOST"]
    name, port = host.rsplit(":", 1)
    assert name in services
    assert flag_value(services[name]["command"], "--port") == port == "8500"
    assert services["gateway"]["environment"]["MODEL_NAME"] == "clothing-model"
    assert services["model-server"]["environment"]["MODEL_NAME"] == "clothing-model"


def test_published_ports() -> None:
    services = compose()["services"]
    assert "127.0.0.1:9696:9696" in services["gateway"]["ports"]
    assert flag_value(services["gateway"]["command"], "--port") == "9696"
    assert {"127.0.0.1:8500:8500", "127.0.0.1:8501:8501"} <= set(services["model-server"]["ports"])


@pytest.mark.parametrize(("service", "path"), [("model-server", "/readyz"), ("gateway", "/readyz")])
def test_health_checks(service: str, path: str) -> None:
    check = compose()["services"][service]["healthcheck"]
    assert check["test"][0] == "CMD"
    code = check["test"][-1]
    compile(code, "<healthcheck>", "exec")
    assert re.search(rf"http://127\.0\.0\.1:\d+{path}'", code)
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in check


def test_gateway_waits_for_a_healthy_model_server() -> None:
    depends = compose()["services"]["gateway"]["depends_on"]
    assert depends == {"model-server": {"condition": "service_healthy"}}


def test_stop_grace_covers_the_server_drain() -> None:
    server = compose()["services"]["model-server"]
    grace = flag_value(server["command"], "--shutdown_grace_seconds")
    assert grace is not None
    stop = server["stop_grace_period"]
    assert stop.endswith("s")
    assert int(stop[:-1]) > float(grace)


def test_docker_compose_accepts_the_file() -> None:
    docker = tool("docker", "Docker's client with the compose plugin")
    plugin = subprocess.run([docker, "compose", "version"], check=False, capture_output=True)
    require(plugin.returncode == 0, "the docker compose plugin is not installed")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# Kubernetes quantities as Compose writes them.
_MEMORY = {"Mi": "m", "Gi": "g"}


@pytest.mark.parametrize("service", sorted(IMAGES))
def test_services_run_as_the_base_manifests_run_their_pods(service: str) -> None:
    """Read-only root, a /tmp of the emptyDir's size, no capabilities, no privilege
    escalation, the CPU and memory limits: what deploy/k8s/base gives the pod."""
    settings = compose()["services"][service]
    deployment = find(rendered("base"), "Deployment", service)
    spec = container(deployment)
    security = spec["securityContext"]
    assert settings["read_only"] is security["readOnlyRootFilesystem"] is True
    assert settings["cap_drop"] == security["capabilities"]["drop"] == ["ALL"]
    assert security["allowPrivilegeEscalation"] is False
    assert "no-new-privileges:true" in settings["security_opt"]
    limits = spec["resources"]["limits"]
    assert float(settings["cpus"]) == float(limits["cpu"])
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", limits["memory"]).groups()  # type: ignore[union-attr]
    assert settings["mem_limit"] == number + _MEMORY[unit]
    (volume,) = deployment["spec"]["template"]["spec"]["volumes"]
    size = volume["emptyDir"]["sizeLimit"].replace("Mi", "m")
    assert settings["tmpfs"] == [f"/tmp:size={size}"]
    assert spec["volumeMounts"] == [{"name": volume["name"], "mountPath": "/tmp"}]
