"""``docker run`` options that reproduce how deploy/k8s/base runs a tier's container.

Everything comes from the rendered base manifests (tests/deploy's renderer): the
user and group, the read-only root filesystem with only the emptyDir mounts the
pod declares (as tmpfs of the declared size), dropped capabilities, no privilege
escalation, the CPU and memory limits, the container's args and env. A restart
policy stands in for the kubelet's, so a crash shows as a RestartCount.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tests.deploy.manifests import container, find, rendered

_MEMORY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (``512Mi``, ``2Gi``, ``1G``) in bytes."""
    match = re.fullmatch(r"(\d+)([kMG]i?)?", quantity)
    assert match, f"unsupported memory quantity {quantity}"
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""]


def cpus(quantity: str) -> float:
    """A Kubernetes CPU quantity (``2``, ``500m``) in CPUs."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@dataclass(frozen=True)
class DeployedContainer:
    name: str
    limits: dict[str, str]
    options: list[str]
    args: list[str]
    env: dict[str, str]

    @property
    def memory_limit(self) -> int:
        return memory_bytes(self.limits["memory"])

    @property
    def cpu_limit(self) -> float:
        return cpus(self.limits["cpu"])


def deployed(deployment: str, kustomization: str = "base") -> DeployedContainer:
    """How the manifests (the base, or e.g. ``overlays/kind``) run ``deployment``'s container."""
    doc = find(rendered(kustomization), "Deployment", deployment)
    pod: dict[str, Any] = doc["spec"]["template"]["spec"]
    spec = container(doc)
    pod_security = pod.get("securityContext", {})
    security = {**pod_security, **spec.get("securityContext", {})}
    assert security.get("runAsNonRoot") is True
    options = ["--user", f"{security['runAsUser']}:{security['runAsGroup']}"]
    if security.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in spec.get("volumeMounts", []):
        empty_dir = volumes[mount["name"]].get("emptyDir")
        assert empty_dir is not None, f"{deployment}: only emptyDir volumes are reproduced"
        size = memory_bytes(empty_dir["sizeLimit"]) if "sizeLimit" in empty_dir else None
        tmpfs = f"{mount['mountPath']}:uid={security['runAsUser']},gid={security['runAsGroup']}"
        options += ["--tmpfs", tmpfs + (f",size={size}" if size else "")]
    for capability in security.get("capabilities", {}).get("drop", []):
        options += ["--cap-drop", capability]
    if security.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    limits = dict(spec["resources"]["limits"])
    memory = str(memory_bytes(limits["memory"]))
    options += ["--cpus", str(cpus(limits["cpu"])), "--memory", memory, "--memory-swap", memory]
    options += ["--restart", "unless-stopped"]
    env = {item["name"]: item["value"] for item in spec.get("env", [])}
    return DeployedContainer(deployment, limits, options, list(spec.get("args", [])), env)
