"""Shipped processes log JSON (for collectors); `clothing up` keeps text (for a person)."""

from __future__ import annotations

import argparse
import re

import pytest

from clothing import up
from tests.deploy.manifests import DOCKER, compose, container, env_of, find, rendered

VARIABLES = {"gateway": "GATEWAY_LOG_FORMAT", "model-server": "MODEL_SERVER_LOG_FORMAT"}


@pytest.mark.parametrize("tier", sorted(VARIABLES))
def test_images_compose_and_manifests_log_json(tier: str) -> None:
    variable = VARIABLES[tier]
    dockerfile = (DOCKER / f"{tier}.Dockerfile").read_text()
    assert re.search(rf"^\s+{variable}=json\b", dockerfile, re.MULTILINE), tier
    assert compose()["services"][tier]["environment"][variable] == "json"
    deployment = find(rendered("base"), "Deployment", tier)
    assert env_of(container(deployment))[variable] == "json"


def test_clothing_up_leaves_the_text_default() -> None:
    """Neither child is told a format: each takes text, its default, unless its variable says
    otherwise."""
    parser = argparse.ArgumentParser()
    up.configure(parser)
    args = parser.parse_args(["--model-base-path=/models/m"])
    for _name, command, _ready in up._children(args):
        assert not any(part.startswith(("--log-format", "--log_format")) for part in command)
