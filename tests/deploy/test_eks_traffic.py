"""The rendered overlays hold the rules that keep real traffic free of 502s and
Pending pods, and keep every path but the intended ones closed.

No EKS cluster can be reached from here: each rule is read from the rendered
manifests and the settings the real ``clothing`` parser makes of them, against the
AWS figures docs/deploy.md gives with their sources.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from typing import Any

import pytest
import yaml

from clothing.gateway.cli import DRAIN_SECONDS
from clothing.gateway.settings import GatewaySettings
from tests.deploy.kustomize import Document
from tests.deploy.manifests import (
    DEPLOY,
    DOCS,
    K8S,
    OVERLAYS,
    container,
    env_of,
    find,
    flag_value,
    of_kind,
    rendered,
)
from tests.deploy.test_consistency import gateway_settings

EKS = "overlays/eks"
ALB = "alb.ingress.kubernetes.io/"
ALL = ["base", *(f"overlays/{name}" for name in OVERLAYS)]
# EKS's CoreDNS caches answers this long (the `cache 30` of its Corefile).
COREDNS_CACHE_SECONDS = 30
# The controller manager's --horizontal-pod-autoscaler-sync-period default.
HPA_SYNC_SECONDS = 15
# m6i.xlarge: 4 vCPUs; the EKS AMI reserves 6 % of the first core, 1 % of the second,
# 0.5 % of the third and fourth for the kubelet (80m), leaving 3920m allocatable.
ALLOCATABLE_CPU_M = {"m6i.xlarge": 3920}
# CPU requests of what else runs: per node the VPC CNI (aws-node with its network
# policy agent, 50m) and kube-proxy (100m); once per cluster CoreDNS (2 x 100m) and
# metrics-server (100m); and 500m kept for the load balancer controller, Prometheus
# and the adapter.
PER_NODE_SYSTEM_M = 150
PER_CLUSTER_SYSTEM_M = 300 + 500


def _annotations(directory: str = EKS) -> dict[str, str]:
    return dict(find(rendered(directory), "Ingress", "gateway")["metadata"]["annotations"])


def _attributes(value: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in value.split(","))


def _pod(docs: list[Document], name: str) -> dict[str, Any]:
    return dict(find(docs, "Deployment", name)["spec"]["template"]["spec"])


def _pre_stop_seconds(spec: dict[str, Any]) -> int:
    command = spec["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    return int(command[1])


def _eks_gateway_settings(monkeypatch: pytest.MonkeyPatch) -> GatewaySettings:
    spec = container(find(rendered(EKS), "Deployment", "gateway"))
    return gateway_settings(spec["args"], env_of(spec), monkeypatch)


# Rule 1: keep-alive above the load balancer's idle timeout.
def test_gateway_keeps_idle_connections_longer_than_the_alb(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    idle = int(
        _attributes(_annotations()[ALB + "load-balancer-attributes"])[
            "idle_timeout.timeout_seconds"
        ]
    )
    assert _eks_gateway_settings(monkeypatch).keep_alive_timeout > idle


# Rule 2: no request lost while a pod leaves.
def test_leaving_gateways_serve_through_deregistration_and_drain() -> None:
    docs = rendered(EKS)
    delay = int(
        _attributes(_annotations()[ALB + "target-group-attributes"])[
            "deregistration_delay.timeout_seconds"
        ]
    )
    pod = _pod(docs, "gateway")
    pre_stop = _pre_stop_seconds(container(find(docs, "Deployment", "gateway")))
    assert pre_stop >= delay >= 25
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + DRAIN_SECONDS


def test_leaving_model_servers_outlast_cached_dns_answers() -> None:
    docs = rendered(EKS)
    spec = container(find(docs, "Deployment", "model-server"))
    pre_stop = _pre_stop_seconds(spec)
    drain = float(flag_value(spec["args"], "--shutdown_grace_seconds") or "nan")
    assert pre_stop >= COREDNS_CACHE_SECONDS
    assert _pod(docs, "model-server")["terminationGracePeriodSeconds"] >= pre_stop + drain


# Rule 3: HTTPS only, with a modern policy and the user's certificate.
def test_alb_listens_on_https_and_redirects_http() -> None:
    annotations = _annotations()
    ports = json.loads(annotations[ALB + "listen-ports"])
    assert sorted(ports, key=str) == sorted([{"HTTP": 80}, {"HTTPS": 443}], key=str)
    assert annotations[ALB + "ssl-redirect"] == "443"
    assert re.fullmatch(r"ELBSecurityPolicy-TLS13-1-2-[\w-]+", annotations[ALB + "ssl-policy"])
    region = yaml.safe_load((DEPLOY / "eks" / "cluster.yaml").read_text())["metadata"]["region"]
    uuid = r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}"
    arn = rf"arn:aws:acm:{region}:\d{{12}}:certificate/{uuid}"
    assert re.fullmatch(arn, annotations[ALB + "certificate-arn"])


# Rule 5: the client's address comes from the ingress and no one else.
def _public_subnets() -> list[ipaddress.IPv4Network]:
    cluster = yaml.safe_load((DEPLOY / "eks" / "cluster.yaml").read_text())
    vpc = ipaddress.IPv4Network(cluster["vpc"]["cidr"])
    zones = len(cluster["availabilityZones"])
    # eksctl's layout: /19 subnets, one public per zone first, then one private per zone.
    return list(vpc.subnets(new_prefix=19))[:zones]


def _http_sources(directory: str) -> list[dict[str, Any]]:
    policy = find(rendered(directory), "NetworkPolicy", "gateway-http")
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 9696, "protocol": "TCP"}]
    return list(rule["from"])


def test_eks_gateway_trusts_and_admits_only_the_alb_subnets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    public = _public_subnets()
    trusted = [
        ipaddress.ip_network(n) for n in _eks_gateway_settings(monkeypatch).forwarded_allow_ips
    ]
    assert trusted == public
    admitted = [ipaddress.ip_network(source["ipBlock"]["cidr"]) for source in _http_sources(EKS)]
    assert admitted == public
    # The nodes and pods live in the private subnets, which neither list reaches.
    cluster = yaml.safe_load((DEPLOY / "eks" / "cluster.yaml").read_text())
    private = list(ipaddress.IPv4Network(cluster["vpc"]["cidr"]).subnets(new_prefix=19))[3:6]
    assert not any(a.overlaps(p) for a in admitted for p in private)


def test_kind_gateway_trusts_contour(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = container(find(rendered("overlays/kind"), "Deployment", "gateway"))
    settings = gateway_settings(spec["args"], env_of(spec), monkeypatch)
    assert settings.forwarded_allow_ips == ("10.244.0.0/16",)
    envoy = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "projectcontour"}},
        "podSelector": {"matchLabels": {"app": "envoy"}},
    }
    assert envoy in _http_sources("overlays/kind")
    assert _http_sources("base") == [envoy]


def test_the_gateway_trusts_no_proxy_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = container(find(rendered("base"), "Deployment", "gateway"))
    assert gateway_settings(spec["args"], env_of(spec), monkeypatch).forwarded_allow_ips == (
        "127.0.0.1",
    )


# Rule 6: the autoscalers' maxima, rollout surges included, fit the nodes.
def test_eks_autoscaler_maxima_fit_the_node_group() -> None:
    docs = rendered(EKS)
    cluster = yaml.safe_load((DEPLOY / "eks" / "cluster.yaml").read_text())
    (group,) = cluster["managedNodeGroups"]
    assert group["minSize"] == group["desiredCapacity"] == group["maxSize"]  # no node autoscaler
    nodes = group["maxSize"]
    free = (
        nodes * (ALLOCATABLE_CPU_M[group["instanceType"]] - PER_NODE_SYSTEM_M)
        - PER_CLUSTER_SYSTEM_M
    )
    needed = 0
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        deployment = find(docs, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
        pods = hpa["spec"]["maxReplicas"] + math.ceil(
            hpa["spec"]["maxReplicas"] * int(surge.rstrip("%")) / 100
        )
        cpu = container(deployment)["resources"]["requests"]["cpu"]
        needed += pods * (int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000))
    assert needed <= free, f"{needed}m of CPU requests at the maxima, {free}m free on {nodes} nodes"
    # docs/deploy.md, "Capacity", shows these sums.
    assert f"{needed}m" in DOCS.read_text()
    assert f"{free}m" in DOCS.read_text()


# Rule 7: the in-flight autoscalers read a windowed average, scraped as often as they sync.
def test_inflight_autoscalers_read_windowed_averages() -> None:
    component = K8S / "components" / "custom-metrics"
    scrape = yaml.safe_load((component / "prometheus-values.yaml").read_text())["server"]["global"]
    interval = int(scrape["scrape_interval"].rstrip("s"))
    assert interval == HPA_SYNC_SECONDS
    rules = yaml.safe_load((component / "prometheus-adapter-values.yaml").read_text())["rules"][
        "custom"
    ]
    for rule in rules:
        window = re.search(
            r"avg_over_time\(<<\.Series>>\{<<\.LabelMatchers>>\}\[(\d+)m\]\)", rule["metricsQuery"]
        )
        assert window, rule["metricsQuery"]
        assert int(window[1]) * 60 >= 4 * interval  # several samples, not the last one
    docs = rendered("overlays/kind-custom-metrics")
    gateway = find(docs, "HorizontalPodAutoscaler", "gateway")
    (pods,) = [m["pods"] for m in gateway["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods["metric"]["name"] == "gateway_inflight_requests"
    # Pods are added well before any gateway refuses at --max-inflight.
    assert float(pods["target"]["averageValue"]) <= GatewaySettings().max_inflight / 2


# Rule 8: disruptions, rollouts and zones.
@pytest.mark.parametrize("directory", ALL)
def test_budgets_and_rollouts_leave_room_to_move(directory: str) -> None:
    docs = rendered(directory)
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        assert pdb["spec"]["maxUnavailable"] == 1
        assert "minAvailable" not in pdb["spec"]
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    for name in ("gateway", "model-server"):
        rolling = find(docs, "Deployment", name)["spec"]["strategy"]["rollingUpdate"]
        assert rolling == {"maxSurge": "25%", "maxUnavailable": 0}


def test_eks_spreads_both_tiers_over_zones() -> None:
    docs = rendered(EKS)
    for name in ("gateway", "model-server"):
        spread = {c["topologyKey"]: c for c in _pod(docs, name)["topologySpreadConstraints"]}
        zone = spread["topology.kubernetes.io/zone"]
        assert zone["labelSelector"] == {"matchLabels": {"app.kubernetes.io/name": name}}
        assert "kubernetes.io/hostname" in spread


# Rule 9: who may talk to whom.
def _selected(policy: Document) -> str:
    labels = policy["spec"]["podSelector"].get("matchLabels", {})
    return str(labels.get("app.kubernetes.io/name", "*"))


def _source(peer: dict[str, Any]) -> str:
    if "ipBlock" in peer:
        return f"ip:{peer['ipBlock']['cidr']}"
    namespace = (
        peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
    )
    pods = peer.get("podSelector", {}).get("matchLabels", {})
    return (
        f"{namespace or 'clothing'}:{','.join(f'{k}={v}' for k, v in sorted(pods.items())) or '*'}"
    )


def _ingress_paths(docs: list[Document]) -> set[tuple[str, int, str]]:
    paths = set()
    for policy in of_kind(docs, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            for port in rule["ports"]:
                for peer in rule["from"]:
                    paths.add((_selected(policy), port["port"], _source(peer)))
    return paths


COMMON_PATHS = {
    ("model-server", 8500, "clothing:app.kubernetes.io/name=gateway"),
    ("model-server", 8501, "monitoring:*"),
    ("gateway", 9697, "monitoring:*"),
}
ENVOY = ("gateway", 9696, "projectcontour:app=envoy")


@pytest.mark.parametrize("directory", ALL)
def test_network_policies_allow_exactly_the_intended_paths(directory: str) -> None:
    docs = rendered(directory)
    deny = find(docs, "NetworkPolicy", "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    if directory == EKS:
        entry = {("gateway", 9696, f"ip:{net}") for net in _public_subnets()}
    elif directory.startswith("overlays/kind"):
        entry = {ENVOY, ("gateway", 9696, "ip:172.18.0.0/16")}
    else:
        entry = {ENVOY}
    assert _ingress_paths(docs) == COMMON_PATHS | entry


def test_the_gateway_reaches_dns_the_model_server_and_public_image_hosts_only() -> None:
    policy = find(rendered("base"), "NetworkPolicy", "gateway-egress")
    assert policy["spec"]["policyTypes"] == ["Egress"]
    dns, model, images = policy["spec"]["egress"]
    assert _source(dns["to"][0]) == "kube-system:k8s-app=kube-dns"
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert _source(model["to"][0]) == "clothing:app.kubernetes.io/name=model-server"
    assert model["ports"] == [{"port": 8500, "protocol": "TCP"}]
    assert {p["port"] for p in images["ports"]} == set(GatewaySettings().fetch_ports)
    for block in images["to"]:
        everything = ipaddress.ip_network(block["ipBlock"]["cidr"])
        assert everything.prefixlen == 0
        excluded = [ipaddress.ip_network(n) for n in block["ipBlock"]["except"]]
        # Only addresses that are not public are left out.
        assert not any(n.is_global for n in excluded)
    v4 = [ipaddress.ip_network(n) for n in images["to"][0]["ipBlock"]["except"]]
    for address in ("10.1.2.3", "172.20.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1"):
        assert any(ipaddress.ip_address(address) in n for n in v4), address


@pytest.mark.parametrize("directory", ALL)
def test_namespace_enforces_pod_security_restricted(directory: str) -> None:
    docs = rendered(directory)
    labels = find(docs, "Namespace", "clothing")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for deployment in of_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for spec in pod["containers"]:
            assert spec["securityContext"]["allowPrivilegeEscalation"] is False
            assert spec["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert all(set(volume) <= {"name", "emptyDir"} for volume in pod["volumes"])


# Rule 12: everything fetched from elsewhere is pinned to an exact release.
def test_remote_manifests_and_charts_are_pinned_exactly() -> None:
    for component in ("contour", "metrics-server"):
        (resource,) = yaml.safe_load((K8S / component / "kustomization.yaml").read_text())[
            "resources"
        ]
        assert re.search(r"/v\d+\.\d+\.\d+/", resource), resource
    text = DOCS.read_text()
    # A command goes on over lines that end in a backslash.
    installs = re.findall(r"helm (?:install|upgrade --install) (?:[^\n\\]|\\\n)*", text)
    assert installs
    for command in installs:
        assert re.search(r"--version \d+\.\d+\.\d+\b", command), command
    for url in re.findall(r"https://\S+\.(?:yaml|json)", text):
        assert re.search(r"/v\d+\.\d+\.\d+/", url), url


def test_controller_permissions_come_from_the_pinned_release() -> None:
    text = DOCS.read_text()
    chart = re.search(
        r"eks/aws-load-balancer-controller[^\n]*(?:\\\n[^\n]*)*--version (\d+)\.(\d+)\.(\d+)", text
    )
    assert chart, "the controller's chart is pinned"
    policy = re.search(
        r"aws-load-balancer-controller/v2\.(\d+)\.(\d+)/docs/install/iam_policy\.json", text
    )
    assert policy, "the controller's own IAM policy is used"
    # Chart 1.X.Y ships controller v2.X.Y.
    assert (chart[1], chart[2], chart[3]) == ("1", policy[1], policy[2])
    cluster = yaml.safe_load((DEPLOY / "eks" / "cluster.yaml").read_text())
    assert cluster["iam"]["withOIDC"] is True
    assert "wellKnownPolicies" not in json.dumps(cluster)
