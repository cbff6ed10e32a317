"""The kustomize renderer agrees with ``kubectl kustomize``, and refuses what it cannot do."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import environment
from tests.deploy.kustomize import (
    KustomizeError,
    apply_json6902,
    identity,
    render,
    strategic_merge,
)
from tests.deploy.manifests import K8S, OVERLAYS, container, find


@pytest.fixture(scope="module")
def kubectl() -> str:
    return environment.kubectl()


# Shaped like metrics-server's upstream components.yaml Deployment (v0.7.x).
METRICS_SERVER_STAND_IN = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "metrics-server", "namespace": "kube-system"},
    "spec": {
        "selector": {"matchLabels": {"k8s-app": "metrics-server"}},
        "template": {
            "metadata": {"labels": {"k8s-app": "metrics-server"}},
            "spec": {
                "containers": [
                    {
                        "name": "metrics-server",
                        "image": "registry.k8s.io/metrics-server/metrics-server:v0.7.2",
                        "args": ["--cert-dir=/tmp", "--secure-port=10250"],
                    }
                ]
            },
        },
    },
}


def test_every_overlay_is_found() -> None:
    assert {"kind", "eks", "kind-custom-metrics"} <= set(OVERLAYS)


@pytest.mark.parametrize("directory", ["base", *(f"overlays/{name}" for name in OVERLAYS)])
def test_renderer_matches_kubectl_kustomize(kubectl: str, directory: str) -> None:
    output = subprocess.run(
        [kubectl, "kustomize", str(K8S / directory)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    expected = {identity(doc): doc for doc in yaml.safe_load_all(output) if doc}
    actual = {identity(doc): doc for doc in render(K8S / directory)}
    assert actual.keys() == expected.keys()
    for key, doc in expected.items():
        assert actual[key] == doc, key


def test_metrics_server_patch_adds_insecure_tls() -> None:
    config = yaml.safe_load((K8S / "metrics-server" / "kustomization.yaml").read_text())
    (resource,) = config["resources"]
    # Pinned to a release, never "latest".
    assert "/releases/download/v0." in resource
    assert resource.endswith("/components.yaml")
    (patch,) = config["patches"]
    assert patch["target"]["name"] == "metrics-server"
    operations = yaml.safe_load((K8S / "metrics-server" / patch["path"]).read_text())
    deployment = yaml.safe_load(yaml.safe_dump(METRICS_SERVER_STAND_IN))
    apply_json6902(deployment, operations)
    args = container(deployment)["args"]
    assert args == ["--cert-dir=/tmp", "--secure-port=10250", "--kubelet-insecure-tls"]


def test_metrics_server_patch_matches_kubectl(kubectl: str, tmp_path: Path) -> None:
    """The shipped patch, applied by kubectl to a local stand-in of the upstream file."""
    shutil.copy(K8S / "metrics-server" / "kubelet-insecure-tls.yaml", tmp_path)
    (tmp_path / "components.yaml").write_text(yaml.safe_dump(METRICS_SERVER_STAND_IN))
    config = yaml.safe_load((K8S / "metrics-server" / "kustomization.yaml").read_text())
    config["resources"] = ["components.yaml"]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(config))
    output = subprocess.run(
        [kubectl, "kustomize", str(tmp_path)], check=True, capture_output=True, text=True
    ).stdout
    (deployment,) = [doc for doc in yaml.safe_load_all(output) if doc]
    assert render(tmp_path) == [deployment]
    assert "--kubelet-insecure-tls" in container(deployment)["args"]


def test_remote_resources_are_refused_not_skipped() -> None:
    with pytest.raises(KustomizeError, match="remote resource"):
        render(K8S / "metrics-server")


def test_unsupported_fields_are_refused(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("configMapGenerator: []\n")
    with pytest.raises(KustomizeError, match="configMapGenerator"):
        render(tmp_path)


def test_strategic_merge_keys_containers_by_name_and_replaces_plain_lists() -> None:
    base = {
        "spec": {
            "containers": [{"name": "a", "image": "x", "args": ["1", "2"]}, {"name": "b"}],
            "metrics": [{"type": "Resource"}],
        }
    }
    patch = {
        "spec": {
            "containers": [{"name": "a", "args": ["3"]}, {"name": "c"}],
            "metrics": [{"type": "Pods"}],
        }
    }
    merged = strategic_merge(base, patch, ())
    # New items go first, as kubectl kustomize puts them (test_renderer_matches_kubectl_kustomize).
    assert merged["spec"]["containers"] == [
        {"name": "c"},
        {"name": "a", "image": "x", "args": ["3"]},
        {"name": "b"},
    ]
    assert merged["spec"]["metrics"] == [{"type": "Pods"}]


def test_service_port_patch_without_protocol_is_an_error() -> None:
    base = {"spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}
    with pytest.raises(KustomizeError, match="protocol"):
        strategic_merge(base, {"spec": {"ports": [{"port": 80, "nodePort": 30000}]}}, ())


def test_patch_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "service.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: real\nspec: {}\n"
    )
    (tmp_path / "patch.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: typo\nspec: {}\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [service.yaml]\npatches:\n  - path: patch.yaml\n"
    )
    with pytest.raises(KustomizeError, match="matches 0"):
        render(tmp_path)


def test_images_rewrite_name_and_tag() -> None:
    docs = render(K8S / "overlays" / "eks")
    image = container(find(docs, "Deployment", "gateway"))["image"]
    assert image.endswith(".amazonaws.com/clothing-classifier/gateway:unset")
