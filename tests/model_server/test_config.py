"""Flags, TF Serving's text-format config files and version policies."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from clothing.model_server import cli, textproto
from clothing.model_server.config import (
    BatchingConfig,
    VersionPolicy,
    parse_batching_parameters,
    parse_channel_arguments,
    parse_model_config,
    parse_monitoring_config,
)

MODEL_CONFIG = """
# two models, TF Serving's format
model_config_list {
  config {
    name: "clothing-model"
    base_path: "/models/clothing"
    model_platform: "onnx"
    model_version_policy { specific { versions: 1 versions: 3 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 3 }
  }
  config: {
    name: 'other'
    base_path: "relative/other"
    model_version_policy { latest { num_versions: 2 } }
  }
}
"""


def test_model_config_file_parses_policies_and_labels() -> None:
    first, second = parse_model_config(MODEL_CONFIG, relative_to=Path("/etc/serving"))
    assert first.name == "clothing-model"
    assert first.base_path == Path("/models/clothing")
    assert first.policy == VersionPolicy("specific", versions=frozenset({1, 3}))
    assert dict(first.labels) == {"stable": 1, "canary": 3}
    assert second.base_path == Path("/etc/serving/relative/other")
    assert second.policy == VersionPolicy("latest", num_versions=2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "model_config_list"),
        ("model_config_list { }", "lists no model"),
        ('model_config_list { config { name: "x" } }', "base_path"),
        ('model_config_list { config { name: "x" base_path: "/p" ', "missing"),
        ('model_config_list { config { name: "x" base_path: "/p" model_platform: "tf" } }', "tf"),
        ("model_config_list { config { name: $ } }", "unexpected"),
    ],
)
def test_bad_model_config_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_model_config(text)


def test_batching_parameters_file() -> None:
    text = """
    max_batch_size { value: 16 }
    batch_timeout_micros { value: 500 }
    max_enqueued_batches { value: 4 }
    num_batch_threads { value: 2 }
    """
    parsed = parse_batching_parameters(text, BatchingConfig())
    assert parsed == BatchingConfig(16, 500, 4, 2)
    with pytest.raises(ValueError, match="unknown batching parameters: bogus"):
        parse_batching_parameters("bogus { value: 1 }", BatchingConfig())
    with pytest.raises(ValueError, match="max_batch_size must be >= 1"):
        parse_batching_parameters("max_batch_size { value: 0 }", BatchingConfig())


def test_allowed_batch_sizes_are_read_and_checked(caplog: pytest.LogCaptureFixture) -> None:
    text = """
    max_batch_size { value: 8 }
    allowed_batch_sizes: 2
    allowed_batch_sizes: 4
    allowed_batch_sizes: 8
    pad_variable_length_inputs: true
    """
    parsed = parse_batching_parameters(text, BatchingConfig())
    assert parsed.allowed_batch_sizes == (2, 4, 8)
    assert [parsed.padded_size(rows) for rows in (1, 2, 3, 5, 8, 9)] == [2, 2, 4, 8, 8, 9]
    assert "pad_variable_length_inputs have no effect" in caplog.text
    assert BatchingConfig().padded_size(3) == 3  # none allowed: no padding
    for sizes, message in (
        ("allowed_batch_sizes: 2 allowed_batch_sizes: 4", "end with max_batch_size"),
        ("allowed_batch_sizes: 4 allowed_batch_sizes: 2 allowed_batch_sizes: 8", "increasing"),
        ("allowed_batch_sizes: 0 allowed_batch_sizes: 8", "positive"),
        ('allowed_batch_sizes: "8"', "must be integers"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_batching_parameters(f"max_batch_size {{ value: 8 }} {sizes}", BatchingConfig())


def test_monitoring_config_names_the_prometheus_path() -> None:
    assert parse_monitoring_config("prometheus_config { enable: true }") == (
        "/monitoring/prometheus/metrics"
    )
    text = 'prometheus_config { enable: true, path: "/scrape" }'
    assert parse_monitoring_config(text) == "/scrape"
    assert parse_monitoring_config("prometheus_config { enable: false }") is None
    assert parse_monitoring_config("") is None
    for bad, message in (
        ("prometheus_config { enable: true path: 'metrics' }", "must start with /"),
        ("prometheus_config { enable: true path: '/v1/models' }", "hide an API route"),
        ("prometheus_config { enable: true bogus: 1 }", "unknown prometheus_config fields"),
        ("tracing { }", "unknown monitoring config fields"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_monitoring_config(bad)


def test_textproto_scalars_lists_and_escapes() -> None:
    parsed = textproto.parse(r'a: 1 b: -2.5 c: "x\"y" d: true e: ENUM f: [1, 2] g < h: 0x10 >')
    assert parsed == {
        "a": [1],
        "b": [-2.5],
        "c": ['x"y'],
        "d": [True],
        "e": ["ENUM"],
        "f": [1, 2],
        "g": [{"h": [16]}],
    }


def test_version_policies_select() -> None:
    found = [1, 2, 5, 3]
    assert VersionPolicy().select(found) == {5}
    assert VersionPolicy("latest", num_versions=2).select(found) == {5, 3}
    assert VersionPolicy("all").select(found) == {1, 2, 3, 5}
    assert VersionPolicy("specific", versions=frozenset({2, 9})).select(found) == {2}
    with pytest.raises(ValueError, match="num_versions"):
        VersionPolicy("latest", num_versions=0)


def test_channel_arguments() -> None:
    assert parse_channel_arguments("grpc.max_connection_age_ms=30000, grpc.x=abc") == (
        ("grpc.max_connection_age_ms", 30000),
        ("grpc.x", "abc"),
    )
    with pytest.raises(ValueError, match="key=value"):
        parse_channel_arguments("nonsense")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    return parser.parse_args(argv)


def test_env_names_the_model_like_the_tf_serving_image() -> None:
    config = cli.config_from_args(_args(), {"MODEL_NAME": "shirts"})
    assert config.models[0].name == "shirts"
    assert config.models[0].base_path == Path("/models/shirts")
    config = cli.config_from_args(_args(), {"MODEL_NAME": "a", "MODEL_BASE_PATH": "/srv/a"})
    assert config.models[0].base_path == Path("/srv/a")
    config = cli.config_from_args(_args("--model_name=b", "--model_base_path=/b"), {})
    assert (config.models[0].name, config.models[0].base_path) == ("b", Path("/b"))
    with pytest.raises(ValueError, match="no model to serve"):
        cli.config_from_args(_args(), {})


def test_flags_build_the_config(tmp_path: Path) -> None:
    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 8 }")
    monitoring = tmp_path / "monitoring.txt"
    monitoring.write_text("prometheus_config { enable: true }")
    config = cli.config_from_args(
        _args(
            f"--monitoring_config_file={monitoring}",
            "--model_name=m",
            "--model_base_path=/m",
            f"--batching_parameters_file={params}",
            "--batch_timeout_micros=250",
            "--response_tensor_content",
            "--execution_providers=cpu",
            "--rest_api_cors_origins=https://a.example,https://b.example",
            "--grpc_channel_arguments=grpc.max_connection_age_ms=1000",
            "--file_system_poll_wait_seconds=0",
        ),
        {},
    )
    assert config.batching is not None
    assert (config.batching.max_batch_size, config.batching.batch_timeout_micros) == (8, 250)
    assert config.response_tensor_content is True
    assert config.runtime.execution_providers == ("cpu",)
    assert config.cors_origins == ("https://a.example", "https://b.example")
    assert config.grpc_channel_arguments == (("grpc.max_connection_age_ms", 1000),)
    assert config.prometheus_path == "/monitoring/prometheus/metrics"
    assert config.poll_wait_seconds == 0
    plain = cli.config_from_args(_args("--model_name=m", "--enable_batching=false"), {})
    assert plain.batching is None


def test_help_documents_every_flag() -> None:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.dest
    text = parser.format_help()
    for flag in (
        "--port",
        "--rest_api_port",
        "--model_config_file",
        "--enable_batching",
        "--batching_parameters_file",
        "--grpc_channel_arguments",
        "--shutdown_grace_seconds",
        "--execution_providers",
        "--max_message_bytes",
        "--rest_api_cors_origins",
    ):
        assert flag in text
