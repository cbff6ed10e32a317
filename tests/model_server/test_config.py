"""Flags, TF Serving's text-format config files and version policies."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from clothing.model_server import cli
from clothing.model_server.config import BatchingConfig, ModelConfig, ServerConfig, VersionPolicy
from clothing.model_server.errors import InvalidArgument
from clothing.model_server.tf_serving_config import (
    models_from_proto,
    parse_text,
    read_batching_parameters_file,
    read_model_config_file,
    read_monitoring_config_file,
)
from clothing.proto.tensorflow_serving.config import model_server_config_pb2

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


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _proto(text: str) -> model_server_config_pb2.ModelServerConfig:
    return parse_text(text, model_server_config_pb2.ModelServerConfig, "test")


def test_model_config_file_parses_policies_and_labels(tmp_path: Path) -> None:
    first, second = read_model_config_file(_write(tmp_path, "models.config", MODEL_CONFIG))
    assert first.name == "clothing-model"
    assert first.base_path == Path("/models/clothing")
    assert first.policy == VersionPolicy("specific", versions=frozenset({1, 3}))
    assert dict(first.labels) == {"stable": 1, "canary": 3}
    assert second.base_path == tmp_path / "relative/other"
    assert second.policy == VersionPolicy("latest", num_versions=2)


def test_text_format_spellings_tf_serving_accepts(tmp_path: Path) -> None:
    """Angle brackets, list values, escapes and trailing separators, as protobuf reads them."""
    text = r"""model_config_list <
      config < name: "a\"b" base_path: '/m/a'; model_platform: "tensorflow", >
      config { name: "c" base_path: "/m/c"
               model_version_policy { specific { versions: [1, 0x2] } } }
    >"""
    models = models_from_proto(_proto(text))
    assert [m.name for m in models] == ['a"b', "c"]
    assert models[1].policy == VersionPolicy("specific", versions=frozenset({1, 2}))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "needs a model_config_list"),
        ("model_config_list { }", "names no model"),
        ('model_config_list { config { name: "x" } }', "needs a name and a base_path"),
        (
            'model_config_list {\n config { name: "x" base_path: "/p" ',
            r'models.config: line 2, column \d+: Expected "}"',
        ),
        (
            "model_config_list {\n  config {\n    name: $ } }",
            r"models.config: line 3, column 11: .*Expected string but found: '\$'",
        ),
        (
            'model_config_list { config { name: "x" base_path: "/p" bogus: 1 } }',
            'line 1, column 56: .*has no field named "bogus"',
        ),
        (
            'model_config_list { config { name: "x" base_path: "/p" model_platform: "tf" } }',
            "model x: model_platform 'tf' is not served here",
        ),
        (
            'model_config_list { config { name: "x" base_path: "/p" model_type: OTHER } }',
            "model x: model_type OTHER is not served here",
        ),
        (
            'model_config_list { config { name: "x" base_path: "/p" } '
            'config { name: "x" base_path: "/q" } }',
            "model x is listed more than once",
        ),
        (
            'model_config_list { config { name: "x" base_path: "/p" '
            "model_version_policy { latest { num_versions: -1 } } } }",
            "Value out of range: -1",
        ),
    ],
)
def test_bad_model_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, "models.config", text)
    with pytest.raises(ValueError, match=message) as raised:
        read_model_config_file(path)
    assert str(raised.value).startswith(str(path))


def test_an_unreadable_model_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot read .*missing\.config: No such file"):
        read_model_config_file(tmp_path / "missing.config")
    binary = tmp_path / "binary.config"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match=r"cannot read .*binary\.config"):
        read_model_config_file(binary)


# The file, its poll loop and HandleReloadConfigRequest share models_from_proto; where the
# two readings used to disagree, TF Serving's behaviour is what both do now.


def test_latest_zero_versions_serves_one_as_in_tf_serving(tmp_path: Path) -> None:
    text = (
        'model_config_list { config { name: "x" base_path: "/p" '
        "model_version_policy { latest { num_versions: 0 } } } }"
    )
    (from_file,) = read_model_config_file(_write(tmp_path, "models.config", text))
    (from_rpc,) = models_from_proto(_proto(text))
    assert from_file.policy == from_rpc.policy == VersionPolicy("latest", num_versions=1)


def test_the_platform_is_checked_for_the_rpc_too() -> None:
    for platform in ("onnx", "tensorflow", ""):
        entry = f'name: "x" base_path: "/p" model_platform: "{platform}"'
        assert models_from_proto(_proto(f"model_config_list {{ config {{ {entry} }} }}"))
    pytorch = 'name: "x" base_path: "/p" model_platform: "pytorch"'
    with pytest.raises(InvalidArgument, match="model_platform 'pytorch' is not served here"):
        models_from_proto(_proto(f"model_config_list {{ config {{ {pytorch} }} }}"))
    both = 'name: "x" base_path: "/p" model_type: TENSORFLOW model_platform: "onnx"'
    with pytest.raises(InvalidArgument, match="both set"):
        models_from_proto(_proto(f"model_config_list {{ config {{ {both} }} }}"))


def test_relative_base_paths_need_a_root_as_in_tf_serving(tmp_path: Path) -> None:
    """TF Serving resolves relative base paths only against model_config_list_root_dir;
    a config file is its own root, the reload RPC has none."""
    text = 'model_config_list { config { name: "x" base_path: "x" } }'
    with pytest.raises(InvalidArgument, match="model x: base_path must be an absolute path"):
        models_from_proto(_proto(text))
    (model,) = models_from_proto(_proto(text), root_dir=tmp_path)
    assert model.base_path == tmp_path / "x"


def test_duplicate_names_are_refused_once_for_every_source() -> None:
    text = (
        'model_config_list { config { name: "x" base_path: "/p" } '
        'config { name: "x" base_path: "/q" } }'
    )
    with pytest.raises(InvalidArgument, match="model x is listed more than once"):
        models_from_proto(_proto(text))
    # ServerConfig no longer repeats the check; the list it is given has been through it.
    assert len(ServerConfig(models=(ModelConfig("x", Path("/p")),)).models) == 1


def test_batching_parameters_file(tmp_path: Path) -> None:
    text = """
    max_batch_size { value: 16 }
    batch_timeout_micros { value: 500 }
    max_enqueued_batches { value: 4 }
    num_batch_threads { value: 2 }
    """
    parsed = read_batching_parameters_file(_write(tmp_path, "b.txt", text), BatchingConfig())
    assert parsed == BatchingConfig(16, 500, 4, 2)
    partial = read_batching_parameters_file(
        _write(tmp_path, "b.txt", "batch_timeout_micros { value: 7 }"), BatchingConfig(4, 1, 2, 3)
    )
    assert partial == BatchingConfig(4, 7, 2, 3)
    for bad, message in (
        ("bogus { value: 1 }", r'b.txt: line 1, column 1: .*no field named "bogus"'),
        ("max_batch_size { value: 0 }", "b.txt: max_batch_size must be >= 1"),
        ("max_batch_size: 32", r'b.txt: line 1, column \d+: .*Expected "{"'),
    ):
        with pytest.raises(ValueError, match=message):
            read_batching_parameters_file(_write(tmp_path, "b.txt", bad), BatchingConfig())


def test_allowed_batch_sizes_are_read_and_checked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = """
    max_batch_size { value: 8 }
    allowed_batch_sizes: 2
    allowed_batch_sizes: [4, 8]
    pad_variable_length_inputs: true
    thread_pool_name { value: "batch_threads" }
    """
    parsed = read_batching_parameters_file(_write(tmp_path, "b.txt", text), BatchingConfig())
    assert parsed.allowed_batch_sizes == (2, 4, 8)
    assert [parsed.padded_size(rows) for rows in (1, 2, 3, 5, 8, 9)] == [2, 2, 4, 8, 8, 9]
    assert "thread_pool_name, pad_variable_length_inputs have no effect" in caplog.text
    assert BatchingConfig().padded_size(3) == 3  # none allowed: no padding
    for sizes, message in (
        ("allowed_batch_sizes: 2 allowed_batch_sizes: 4", "end with max_batch_size"),
        ("allowed_batch_sizes: 4 allowed_batch_sizes: 2 allowed_batch_sizes: 8", "increasing"),
        ("allowed_batch_sizes: 0 allowed_batch_sizes: 8", "positive"),
        ('allowed_batch_sizes: "8"', "Couldn't parse integer"),
    ):
        path = _write(tmp_path, "b.txt", f"max_batch_size {{ value: 8 }} {sizes}")
        with pytest.raises(ValueError, match=message):
            read_batching_parameters_file(path, BatchingConfig())


def test_monitoring_config_names_the_prometheus_path(tmp_path: Path) -> None:
    def path_in(text: str) -> str | None:
        return read_monitoring_config_file(_write(tmp_path, "monitoring.txt", text))

    assert path_in("prometheus_config { enable: true }") == "/monitoring/prometheus/metrics"
    assert path_in('prometheus_config { enable: true, path: "/scrape" }') == "/scrape"
    assert path_in("prometheus_config { enable: false }") is None
    assert path_in("") is None
    for bad, message in (
        ("prometheus_config { enable: true path: 'metrics' }", "must start with /"),
        ("prometheus_config { enable: true path: '/v1/models' }", "hide an API route"),
        ("prometheus_config { enable: true bogus: 1 }", 'no field named "bogus"'),
        ("tracing { }", 'no field named "tracing"'),
    ):
        with pytest.raises(ValueError, match=f"monitoring.txt: .*{message}"):
            path_in(bad)


def test_version_policies_select() -> None:
    found = [1, 2, 5, 3]
    assert VersionPolicy().select(found) == {5}
    assert VersionPolicy("latest", num_versions=2).select(found) == {5, 3}
    assert VersionPolicy("all").select(found) == {1, 2, 3, 5}
    assert VersionPolicy("specific", versions=frozenset({2, 9})).select(found) == {2}
    with pytest.raises(ValueError, match="num_versions"):
        VersionPolicy("latest", num_versions=0)


def test_channel_arguments() -> None:
    assert cli.parse_channel_arguments("grpc.max_connection_age_ms=30000, grpc.x=abc") == (
        ("grpc.max_connection_age_ms", 30000),
        ("grpc.x", "abc"),
    )
    with pytest.raises(ValueError, match="--grpc_channel_arguments: 'nonsense' is not key=value"):
        cli.parse_channel_arguments("nonsense")


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


def test_server_config_names_its_own_fields(tmp_path: Path) -> None:
    models = (ModelConfig("m", tmp_path),)
    with pytest.raises(ValueError, match=r"^port and rest_api_port must differ$"):
        ServerConfig(models=models, port=9000, rest_api_port=9000)
    with pytest.raises(ValueError, match=r"^max_concurrent_rest must be >= 1$"):
        ServerConfig(models=models, max_concurrent_rest=0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port=9000", "--rest_api_port=9000"], "--port and --rest_api_port must differ"),
        (["--port=70000"], r"--port 70000 is out of range \(0-65535\)"),
        (["--file_system_poll_wait_seconds=-1"], "--file_system_poll_wait_seconds must be >= 0"),
        (
            ["--model_config_file_poll_wait_seconds=1"],
            "--model_config_file_poll_wait_seconds needs --model_config_file",
        ),
        (["--rest_max_concurrent_requests=0"], "--rest_max_concurrent_requests must be >= 1"),
        (["--max_message_bytes=10"], "--max_message_bytes must be at least 1024"),
        (["--max_batch_size=0", "--enable_batching"], "max_batch_size must be >= 1"),
    ],
)
def test_cli_errors_name_the_flags(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        cli.config_from_args(_args("--model_name=m", *argv), {})


def test_cli_errors_name_the_flag_and_the_file(tmp_path: Path) -> None:
    config = _write(tmp_path, "models.config", MODEL_CONFIG)
    too_few = ("--max_models=1", f"--model_config_file={config}")
    with pytest.raises(ValueError, match=r"^2 models configured, over --max_models$"):
        cli.config_from_args(_args(*too_few), {})
    bad = _write(tmp_path, "bad.config", "model_config_list {\n  config { name: 1 }\n}")
    with pytest.raises(ValueError, match=rf"^--model_config_file: {bad}: line 2, column 18: "):
        cli.config_from_args(_args(f"--model_config_file={bad}"), {})
    params = _write(tmp_path, "batching.txt", "max_batch_size { value: 0 }")
    with pytest.raises(ValueError, match=rf"^--batching_parameters_file: {params}: max_batch"):
        cli.config_from_args(_args("--model_name=m", f"--batching_parameters_file={params}"), {})
    missing = tmp_path / "absent.txt"
    with pytest.raises(ValueError, match=rf"^--monitoring_config_file: cannot read {missing}: "):
        cli.config_from_args(_args("--model_name=m", f"--monitoring_config_file={missing}"), {})
