"""Paths and loaders for the deployment files the tests read."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.kustomize import Document, render

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKER = DEPLOY / "docker"
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCS = ROOT / "docs" / "deploy.md"
PUSH_SCRIPT = DEPLOY / "eks" / "push-images.sh"

# The Kubernetes version the manifests target: the schemas they are validated
# against, the kind node image and the EKS cluster version (docs/deploy.md,
# "Kubernetes version", says how to move all three).
KUBERNETES_VERSION = "1.36"
NAMESPACE = "clothing"
MODEL_SERVER_IMAGE = "clothing-classifier/model-server:0.1.0"
GATEWAY_IMAGE = "clothing-classifier/gateway:0.1.0"
IMAGES = {"model-server": MODEL_SERVER_IMAGE, "gateway": GATEWAY_IMAGE}

OVERLAYS = sorted(path.parent.name for path in (K8S / "overlays").glob("*/kustomization.yaml"))


@cache
def _rendered(kustomization_dir: str) -> tuple[Document, ...]:
    return tuple(render(K8S / kustomization_dir))


def rendered(kustomization_dir: str) -> list[Document]:
    """Rendered resources of ``deploy/k8s/<kustomization_dir>`` (a fresh copy each call)."""
    return yaml.safe_load(yaml.safe_dump(list(_rendered(kustomization_dir))))


def find(docs: list[Document], kind: str, name: str) -> Document:
    matches = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def of_kind(docs: list[Document], kind: str) -> list[Document]:
    return [doc for doc in docs if doc["kind"] == kind]


def container(deployment: Document) -> dict[str, Any]:
    """The Deployment's container named like the Deployment."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    named = [c for c in containers if c["name"] == deployment["metadata"]["name"]]
    assert len(named) == 1, f"{deployment['metadata']['name']}: no container of that name"
    return dict(named[0])


def env_of(container_spec: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container_spec.get("env", [])}


def named_port(container_spec: dict[str, Any], port: int | str) -> int:
    """Resolve a probe or Service target port (a number or a port name) to a number."""
    if isinstance(port, int):
        return port
    for item in container_spec.get("ports", []):
        if item.get("name") == port:
            return int(item["containerPort"])
    raise AssertionError(f"container {container_spec['name']} has no port named {port}")


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of ``--flag=value`` in an argument list."""
    for arg in args:
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    return None


@cache
def dockerfile(name: str) -> str:
    return (DOCKER / f"{name}.Dockerfile").read_text()


def dockerfile_instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile(name))
    instructions: list[tuple[str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions
