"""docs/deploy.md works read top to bottom: each command finds what earlier ones made.

The shell blocks are read in order, continuation lines joined. Compose must be
stopped before kind publishes the same host port, no forwarded local port may be
one the kind cluster publishes, each step comes after what it needs, and every
repository file a command names exists.
"""

from __future__ import annotations

import re

import yaml

from tests.deploy.manifests import DEPLOY, DOCS, ROOT, compose


def _commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOCS.read_text(), re.DOTALL)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _first(pattern: str) -> int:
    for index, command in enumerate(_commands()):
        if re.search(pattern, command):
            return index
    raise AssertionError(f"no command matches {pattern!r}")


def _kind_host_ports() -> set[int]:
    cluster = yaml.safe_load((DEPLOY / "kind" / "cluster.yaml").read_text())
    return {
        int(mapping["hostPort"])
        for node in cluster["nodes"]
        for mapping in node.get("extraPortMappings", [])
    }


def _compose_host_ports() -> set[int]:
    ports: set[int] = set()
    for service in compose()["services"].values():
        for entry in service.get("ports", []):
            text = entry if isinstance(entry, str) else str(entry.get("published", ""))
            parts = text.split(":")
            if len(parts) >= 2:
                ports.add(int(parts[-2]))
    return ports


def test_compose_is_stopped_before_kind_claims_its_port() -> None:
    up = _first(r"^docker compose up\b")
    create = _first(r"^kind create cluster\b")
    assert _compose_host_ports() & _kind_host_ports() == {9696}
    down = _first(r"^docker compose down\b")
    assert up < down < create


def test_forwarded_ports_do_not_collide_with_the_kind_cluster() -> None:
    forwarded = {int(port) for port in re.findall(r"port-forward \S+ (\d+):", DOCS.read_text())}
    assert forwarded
    assert forwarded.isdisjoint(_kind_host_ports())


def test_requests_to_localhost_go_to_a_port_something_listens_on() -> None:
    forwarded = {int(port) for port in re.findall(r"port-forward \S+ (\d+):", DOCS.read_text())}
    listening = _kind_host_ports() | _compose_host_ports() | forwarded
    for command in _commands():
        for port in re.findall(r"localhost:(\d+)", command):
            assert int(port) in listening, command


def test_each_kind_step_follows_what_it_needs() -> None:
    create = _first(r"^kind create cluster\b")
    tag = _first(r"^TAG=\$\(deploy/image-tag\.sh\)")
    build = _first(r"^docker build .*:\$TAG \.$")
    load = _first(r"^kind load docker-image .*\$TAG")
    set_tag = _first(r"^deploy/set-image-tag\.sh deploy/k8s/overlays/kind ")
    contour = _first(r"^kubectl apply -k deploy/k8s/contour$")
    deploy = _first(r"^kubectl apply -k deploy/k8s/overlays/kind$")
    request = _first(r"^curl -F file=@\S+ localhost:8080/predict$")
    assert create < tag < build < load < set_tag < deploy < request
    assert create < contour < deploy


def test_each_eks_step_follows_what_it_needs() -> None:
    cluster = _first(r"^eksctl create cluster -f deploy/eks/cluster\.yaml$")
    controller = _first(r"^helm install aws-load-balancer-controller ")
    push = _first(r"deploy/eks/push-images\.sh$")
    deploy = _first(r"^kubectl apply -k deploy/k8s/overlays/eks$")
    address = _first(r"get ingress gateway")
    request = _first(r'^curl --connect-to \S+ -F file=@\S+ "https://\$GATEWAY/predict"$')
    assert cluster < controller < deploy < address < request
    assert push < deploy
    assert "--set serviceAccount.name=aws-load-balancer-controller" in _commands()[controller]


def test_every_repository_path_a_command_names_exists() -> None:
    paths = {
        match.rstrip(".")
        for command in _commands()
        for match in re.findall(r"(?<![\w/])((?:deploy|docs)/[\w./-]+)", command)
    }
    assert "docs/examples/pants.jpg" in paths
    missing = sorted(path for path in paths if not (ROOT / path).exists())
    assert missing == []
