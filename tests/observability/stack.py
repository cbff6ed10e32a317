"""Both tiers as processes logging JSON, and a real Prometheus scraping them."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from clothing.processes import free_port, start_logged, stop_process, wait_ready
from tests.fixtures import (
    GatewayProcess,
    ModelServerProcess,
    build_test_model,
    run_gateway,
    run_model_server,
)
from tests.observability.shipped import ALERTS, PROMETHEUS_CONFIG, prometheus

JSON_LOGS = {"MODEL_SERVER_LOG_FORMAT": "json"}


@dataclass
class Stack:
    model_server: ModelServerProcess
    gateway: GatewayProcess


@contextlib.contextmanager
def both_tiers(
    model_dir: Path,
    *,
    model_server_args: Sequence[str] = (),
    gateway_args: Sequence[str] = (),
) -> Iterator[Stack]:
    """A model server and a gateway in front of it, both logging JSON at info level."""
    build_test_model(model_dir / "1")
    with (
        run_model_server(
            model_dir, extra_args=model_server_args, env=JSON_LOGS, expect_exit_code=None
        ) as model_server,
        run_gateway(
            model_server.grpc_address, "--log-level=info", "--log-format=json", *gateway_args
        ) as gateway,
    ):
        yield Stack(model_server, gateway)


def json_lines(log: str) -> list[dict[str, Any]]:
    """Every line of a JSON log, parsed: a line that is not one JSON object fails."""
    entries = []
    for line in log.splitlines():
        if line.strip():
            entry = json.loads(line)
            assert isinstance(entry, dict), line
            entries.append(entry)
    return entries


def access_lines(log: str, tier: str) -> list[dict[str, Any]]:
    return [e for e in json_lines(log) if e["logger"] == f"clothing.{tier}.access"]


@dataclass
class Prometheus:
    url: str
    client: httpx.Client

    def query(self, expr: str) -> dict[str, Any]:
        """An instant query's ``data``; an expression Prometheus refuses fails here."""
        answer = self.client.get(f"{self.url}/api/v1/query", params={"query": expr})
        body = answer.json()
        assert body["status"] == "success", f"{expr}: {body}"
        return dict(body["data"])

    def get(self, path: str, **params: Any) -> Any:
        body = self.client.get(f"{self.url}{path}", params=params).json()
        assert body["status"] == "success", body
        return body["data"]


def scrape_config(gateway_port: int, model_server_port: int, rules: Path) -> dict[str, Any]:
    """The shipped prometheus.yml, pointed at these ports, scraping every second."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(rules)]
    ports = {"gateway": gateway_port, "model-server": model_server_port}
    for job in config["scrape_configs"]:
        for target in job["static_configs"]:
            target["targets"] = [f"127.0.0.1:{ports[job['job_name']]}"]
    return dict(config)


def rules_without_waiting(directory: Path) -> Path:
    """alerts.yml with every ``for`` removed: the shipped expressions, firing at once."""
    groups = yaml.safe_load(ALERTS.read_text())
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule.pop("for", None)
    path = directory / "alerts.yml"
    path.write_text(yaml.safe_dump(groups))
    return path


@contextlib.contextmanager
def run_prometheus(stack: Stack) -> Iterator[Prometheus]:
    """Prometheus on a free loopback port with a storage folder of its own."""
    binary = prometheus()
    with tempfile.TemporaryDirectory(prefix="prometheus-") as folder:
        directory = Path(folder)
        rules = rules_without_waiting(directory)
        config = scrape_config(stack.gateway.port, stack.model_server.rest_port, rules)
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log_path = directory / "prometheus.log"
        process = start_logged(
            [
                binary,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            log_path,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{url}/-/ready", process, 60.0)
            with httpx.Client(timeout=10.0) as client:
                yield Prometheus(url, client)
        except BaseException:
            sys.stderr.write(log_path.read_text(errors="replace"))
            raise
        finally:
            stop_process(process)


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout:g} s")
