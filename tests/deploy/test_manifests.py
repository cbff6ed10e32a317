"""Every rendered manifest validates against Kubernetes' schemas and hangs together."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.kustomize import Document
from tests.deploy.manifests import (
    DEPLOY,
    IMAGES,
    K8S,
    KUBERNETES_VERSION,
    NAMESPACE,
    OVERLAYS,
    container,
    env_of,
    find,
    flag_value,
    named_port,
    of_kind,
    rendered,
)

ALL = ["base", *(f"overlays/{name}" for name in OVERLAYS)]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("directory", ALL)
def test_every_manifest_validates_strictly(directory: str) -> None:
    docs = rendered(directory)
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            pytest.fail(f"{directory}: {name}: {error.message}")


def test_strict_validation_catches_a_typo() -> None:
    """Guards the test above: a misspelled field must fail validation."""
    doc = find(rendered("base"), "Deployment", "model-server")
    doc["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("directory", ALL)
def test_everything_lives_in_the_clothing_namespace(directory: str) -> None:
    for doc in rendered(directory):
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == NAMESPACE
        else:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]


@pytest.mark.parametrize("directory", ALL)
def test_services_select_pods_and_target_declared_ports(directory: str) -> None:
    docs = rendered(directory)
    deployments = of_kind(docs, "Deployment")
    for service in of_kind(docs, "Service"):
        selected = [
            d
            for d in deployments
            if _selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(selected) == 1, service["metadata"]["name"]
        spec = container(selected[0])
        for port in service["spec"]["ports"]:
            named_port(spec, port["targetPort"])


@pytest.mark.parametrize("directory", ALL)
def test_hpas_target_existing_deployments(directory: str) -> None:
    docs = rendered(directory)
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    assert {hpa["metadata"]["name"] for hpa in hpas} == {"model-server", "gateway"}
    for hpa in hpas:
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        deployment = find(docs, "Deployment", target["name"])
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        assert {"scaleUp", "scaleDown"} <= set(hpa["spec"]["behavior"])
        metric_types = {metric["type"] for metric in hpa["spec"]["metrics"]}
        assert "Resource" in metric_types
        # CPU utilisation is a share of the request: a container without one never scales.
        assert "cpu" in container(deployment)["resources"]["requests"]


@pytest.mark.parametrize("directory", ALL)
def test_autoscaled_deployments_leave_the_replica_count_to_the_autoscaler(directory: str) -> None:
    """A ``replicas`` field would undo the autoscaler's scale-out at every ``kubectl apply``."""
    docs = rendered(directory)
    scaled = {
        hpa["spec"]["scaleTargetRef"]["name"] for hpa in of_kind(docs, "HorizontalPodAutoscaler")
    }
    assert scaled == {"model-server", "gateway"}
    for name in scaled:
        assert "replicas" not in find(docs, "Deployment", name)["spec"], name


@pytest.mark.parametrize("directory", ALL)
def test_pod_disruption_budgets_cover_both_tiers(directory: str) -> None:
    docs = rendered(directory)
    pdbs = of_kind(docs, "PodDisruptionBudget")
    covered = set()
    for pdb in pdbs:
        selector = pdb["spec"]["selector"]["matchLabels"]
        for deployment in of_kind(docs, "Deployment"):
            if _selects(selector, deployment["spec"]["template"]["metadata"]["labels"]):
                covered.add(deployment["metadata"]["name"])
    assert covered == {"model-server", "gateway"}


@pytest.mark.parametrize("directory", ALL)
def test_model_server_pod_drains_gracefully(directory: str) -> None:
    deployment = find(rendered(directory), "Deployment", "model-server")
    pod = deployment["spec"]["template"]["spec"]
    spec = container(deployment)
    grace = flag_value(spec["args"], "--shutdown_grace_seconds")
    assert grace is not None
    pre_stop = spec["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # The kubelet kills at terminationGracePeriodSeconds, counted from preStop's start.
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + float(grace)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert named_port(spec, spec[probe]["httpGet"]["port"]) == 8501
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= set(spec["resources"])
    assert env_of(spec)["MODEL_NAME"] == "clothing-model"


@pytest.mark.parametrize("directory", ALL)
def test_grpc_is_balanced_client_side(directory: str) -> None:
    docs = rendered(directory)
    headless = [
        s
        for s in of_kind(docs, "Service")
        if s["spec"].get("clusterIP") == "None"
        and any(port["port"] == 8500 for port in s["spec"]["ports"])
    ]
    assert len(headless) == 1
    server = container(find(docs, "Deployment", "model-server"))
    channel_args = flag_value(server["args"], "--grpc_channel_arguments")
    assert channel_args is not None
    settings = dict(item.split("=", 1) for item in channel_args.split(","))
    assert int(settings["grpc.max_connection_age_ms"]) > 0
    assert "grpc.max_connection_age_grace_ms" in settings
    host = env_of(container(find(docs, "Deployment", "gateway")))["TF_SERVING_HOST"]
    service = headless[0]["metadata"]
    assert host == f"dns:///{service['name']}.{service['namespace']}.svc.cluster.local:8500"


@pytest.mark.parametrize("directory", ALL)
def test_gateway_probes_and_exposure(directory: str) -> None:
    docs = rendered(directory)
    spec = container(find(docs, "Deployment", "gateway"))
    assert named_port(spec, "http") == 9696
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= set(spec["resources"])
    ingress = find(docs, "Ingress", "gateway")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = find(docs, "Service", backend["name"])
    assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}


@pytest.mark.parametrize("directory", ALL)
def test_images_are_the_project_images(directory: str) -> None:
    docs = rendered(directory)
    for name, image in IMAGES.items():
        actual = container(find(docs, "Deployment", name))["image"]
        # Overlays carry the tag of the build they deploy (test_image_tags.py).
        repository = image.split(":")[0] if directory != "base" else image
        if directory == "overlays/eks":
            ecr = r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/"
            assert re.fullmatch(ecr + re.escape(repository) + r"(:[\w.-]+)?", actual)
        else:
            assert re.fullmatch(re.escape(repository) + r"(:[\w.-]+)?", actual)


def test_kind_overlay_publishes_the_gateway_on_the_mapped_port() -> None:
    service = find(rendered("overlays/kind"), "Service", "gateway")
    assert service["spec"]["type"] == "NodePort"
    (port,) = service["spec"]["ports"]
    cluster = yaml.safe_load((DEPLOY / "kind" / "cluster.yaml").read_text())
    mappings = [m for node in cluster["nodes"] for m in node.get("extraPortMappings", [])]
    assert {"containerPort": port["nodePort"], "hostPort": 9696} in [
        {key: m[key] for key in ("containerPort", "hostPort")} for m in mappings
    ]
    (node_image,) = {node["image"] for node in cluster["nodes"]}
    # One Kubernetes version everywhere, pinned by digest as kind's release notes ask.
    version = re.escape(KUBERNETES_VERSION)
    assert re.fullmatch(rf"kindest/node:v{version}\.\d+@sha256:[0-9a-f]{{64}}", node_image)


def test_eks_cluster_and_overlay_agree() -> None:
    cluster = yaml.safe_load((DEPLOY / "eks" / "cluster.yaml").read_text())
    assert cluster["apiVersion"] == "eksctl.io/v1alpha5"
    assert cluster["kind"] == "ClusterConfig"
    assert cluster["metadata"]["version"] == KUBERNETES_VERSION
    region = cluster["metadata"]["region"]
    overlay = (K8S / "overlays" / "eks" / "kustomization.yaml").read_text()
    assert f".dkr.ecr.{region}.amazonaws.com/" in overlay
    for group in cluster["managedNodeGroups"]:
        assert group["minSize"] <= group["desiredCapacity"] <= group["maxSize"]


def _inflight_metric(hpa: Document) -> dict[str, Any]:
    pods = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert len(pods) == 1
    return dict(pods[0]["pods"])


INFLIGHT_GAUGES = {
    "model-server": "model_server_inflight_requests",
    "gateway": "gateway_inflight_requests",
}


@pytest.mark.parametrize("tier", sorted(INFLIGHT_GAUGES))
def test_custom_metrics_scale_each_tier_on_inflight_requests(tier: str) -> None:
    docs = rendered("overlays/kind-custom-metrics")
    hpa = find(docs, "HorizontalPodAutoscaler", tier)
    metric = _inflight_metric(hpa)
    assert metric["metric"]["name"] == INFLIGHT_GAUGES[tier]
    assert float(metric["target"]["averageValue"]) > 0
    # CPU still counts: the HPA follows whichever metric asks for more pods.
    assert "Resource" in [m["type"] for m in hpa["spec"]["metrics"]]
    # Plain overlays carry no custom metric.
    plain = find(rendered("overlays/kind"), "HorizontalPodAutoscaler", tier)
    assert [m["type"] for m in plain["spec"]["metrics"]] == ["Resource"]
    # Prometheus finds the gauge where the pods say it is.
    deployment = find(docs, "Deployment", tier)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    port = "http" if tier == "model-server" else "metrics"
    assert named_port(container(deployment), port) == int(annotations["prometheus.io/port"])


def test_prometheus_adapter_rules_serve_each_gauge_per_pod() -> None:
    values = yaml.safe_load(
        (K8S / "components" / "custom-metrics" / "prometheus-adapter-values.yaml").read_text()
    )
    rules = {rule["name"]["as"]: rule for rule in values["rules"]["custom"]}
    assert set(rules) == set(INFLIGHT_GAUGES.values())
    for name, rule in rules.items():
        assert rule["seriesQuery"].startswith(name + "{")
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
        assert "<<.Series>>" in rule["metricsQuery"]
        assert "<<.GroupBy>>" in rule["metricsQuery"]
