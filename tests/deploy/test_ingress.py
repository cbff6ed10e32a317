"""Each environment's Ingress has a controller that is installed and reachable.

kind: Contour (``deploy/k8s/contour``), its Envoy pinned to the worker that
``deploy/kind/cluster.yaml`` labels ``ingress-ready`` and whose port 80 it
publishes on the host. EKS: the AWS Load Balancer Controller (class ``alb``),
its IAM permissions those of its pinned release (test_eks_traffic.py).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from clothing.gateway.app import create_app
from clothing.gateway.settings import GatewaySettings
from tests import environment
from tests.deploy.kustomize import apply_json6902, render
from tests.deploy.manifests import DEPLOY, K8S, OVERLAYS, find, rendered

CONTOUR = K8S / "contour"
KIND_INGRESS_HOST_PORT = 8080
# Shaped like the Envoy DaemonSet of Contour's examples/render/contour.yaml (v1.33).
ENVOY_STAND_IN: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": "envoy", "namespace": "projectcontour", "labels": {"app": "envoy"}},
    "spec": {
        "selector": {"matchLabels": {"app": "envoy"}},
        "template": {
            "metadata": {"labels": {"app": "envoy"}},
            "spec": {
                "containers": [
                    {
                        "name": "envoy",
                        "image": "docker.io/envoyproxy/envoy:distroless-v1.35.8",
                        "ports": [
                            {"containerPort": 8080, "hostPort": 80, "name": "http"},
                            {"containerPort": 8443, "hostPort": 443, "name": "https"},
                        ],
                    }
                ],
                "serviceAccountName": "envoy",
            },
        },
    },
}


def _kind_cluster() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "kind" / "cluster.yaml").read_text()))


def _patched_envoy() -> dict[str, Any]:
    config = yaml.safe_load((CONTOUR / "kustomization.yaml").read_text())
    (patch,) = config["patches"]
    assert patch["target"]["kind"] == "DaemonSet"
    assert (patch["target"]["name"], patch["target"]["namespace"]) == ("envoy", "projectcontour")
    envoy: dict[str, Any] = yaml.safe_load(yaml.safe_dump(ENVOY_STAND_IN))
    apply_json6902(envoy, yaml.safe_load((CONTOUR / patch["path"]).read_text()))
    return envoy


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_names_its_environments_controller(overlay: str) -> None:
    expected = "alb" if overlay == "eks" else "contour"
    ingress = find(rendered(f"overlays/{overlay}"), "Ingress", "gateway")
    assert ingress["spec"]["ingressClassName"] == expected
    # The base leaves the choice to overlays (or the cluster's default class).
    assert "ingressClassName" not in find(rendered("base"), "Ingress", "gateway")["spec"]


def test_contour_is_a_pinned_release() -> None:
    config = yaml.safe_load((CONTOUR / "kustomization.yaml").read_text())
    (resource,) = config["resources"]
    assert resource.startswith("https://raw.githubusercontent.com/projectcontour/contour/v1.")
    assert resource.endswith("/examples/render/contour.yaml")


def test_envoy_runs_on_the_kind_node_whose_port_80_reaches_the_host() -> None:
    pod = _patched_envoy()["spec"]["template"]["spec"]
    selector = pod["nodeSelector"]
    (host_port,) = [
        port["hostPort"] for port in pod["containers"][0]["ports"] if port["name"] == "http"
    ]
    nodes = _kind_cluster()["nodes"]
    chosen = [
        node
        for node in nodes
        if all(node.get("labels", {}).get(key) == value for key, value in selector.items())
    ]
    # One node, a worker: the control plane's taint would keep Envoy off it.
    assert [node["role"] for node in chosen] == ["worker"]
    assert selector == {"ingress-ready": "true"}
    mappings = {m["containerPort"]: m for m in chosen[0]["extraPortMappings"]}
    assert mappings[host_port]["hostPort"] == KIND_INGRESS_HOST_PORT
    assert mappings[host_port]["listenAddress"] == "127.0.0.1"


def test_kind_host_ports_are_distinct() -> None:
    ports = [
        mapping["hostPort"]
        for node in _kind_cluster()["nodes"]
        for mapping in node.get("extraPortMappings", [])
    ]
    assert sorted(ports) == sorted(set(ports)) == [KIND_INGRESS_HOST_PORT, 9696]


def test_contour_patch_matches_kubectl(tmp_path: Path) -> None:
    """The shipped patch, applied by kubectl to a local stand-in of the upstream file."""
    kubectl = environment.kubectl()
    config = yaml.safe_load((CONTOUR / "kustomization.yaml").read_text())
    shutil.copy(CONTOUR / config["patches"][0]["path"], tmp_path)
    (tmp_path / "contour.yaml").write_text(yaml.safe_dump(ENVOY_STAND_IN))
    config["resources"] = ["contour.yaml"]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(config))
    output = subprocess.run(
        [kubectl, "kustomize", str(tmp_path)], check=True, capture_output=True, text=True
    ).stdout
    (daemonset,) = [doc for doc in yaml.safe_load_all(output) if doc]
    assert render(tmp_path) == [daemonset] == [_patched_envoy()]


def test_alb_sends_requests_to_ready_gateway_pods() -> None:
    docs = rendered("overlays/eks")
    annotations = find(docs, "Ingress", "gateway")["metadata"]["annotations"]
    prefix = "alb.ingress.kubernetes.io/"
    assert annotations[prefix + "scheme"] == "internet-facing"
    # Pod IPs as targets: the Service needs no NodePort or cloud load balancer of its own.
    assert annotations[prefix + "target-type"] == "ip"
    assert find(docs, "Service", "gateway")["spec"]["type"] == "ClusterIP"
    routes = {route.path for route in create_app(GatewaySettings()).routes}  # type: ignore[attr-defined]
    assert annotations[prefix + "healthcheck-path"] in routes
    attributes = dict(
        item.split("=", 1) for item in annotations[prefix + "target-group-attributes"].split(",")
    )
    delay = int(attributes["deregistration_delay.timeout_seconds"])
    grace = find(docs, "Deployment", "gateway")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    assert 0 < delay < grace
    namespace = find(docs, "Namespace", "clothing")["metadata"]["labels"]
    assert namespace["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"
