"""The ``clothing model-server`` process: env, config file, drain on SIGTERM, inspect."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from clothing import tensors
from clothing.proto.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tests.fixtures import build_test_model, cli_command, model_server_command, run_model_server


def predict(
    address: str, model: str, batch: np.ndarray, **spec: object
) -> predict_pb2.PredictResponse:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if "label" in spec:
        request.model_spec.version_label = str(spec["label"])
    request.inputs["image"].CopyFrom(tensors.from_numpy(batch))
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]
        return stub.Predict(request, timeout=60)


def batch_of(count: int) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def test_env_names_the_model(tmp_path: Path) -> None:
    build_test_model(tmp_path / "shirts" / "4")
    env = {"MODEL_NAME": "shirts", "MODEL_BASE_PATH": str(tmp_path / "shirts")}
    with run_model_server(None, env=env) as server:
        response = predict(server.grpc_address, "shirts", batch_of(1))
        assert response.model_spec.version.value == 4


def test_config_file_with_labels_and_policies(tmp_path: Path) -> None:
    for version in (1, 2, 3):
        build_test_model(tmp_path / "a" / str(version), seed=version)
    build_test_model(tmp_path / "b" / "1")
    config = tmp_path / "models.config"
    config.write_text(
        """
        model_config_list {
          config {
            name: "a" base_path: "a" model_platform: "onnx"
            model_version_policy { specific { versions: 1 versions: 2 } }
            version_labels { key: "stable" value: 1 }
            version_labels { key: "canary" value: 2 }
          }
          config { name: "b" base_path: "b" }
        }
        """
    )
    with run_model_server(None, extra_args=[f"--model_config_file={config}"]) as server:
        assert predict(server.grpc_address, "a", batch_of(1)).model_spec.version.value == 2
        stable = predict(server.grpc_address, "a", batch_of(1), label="stable")
        assert stable.model_spec.version.value == 1
        status = httpx.get(f"{server.rest_url}/v1/models/a/labels/canary").json()
        assert status["model_version_status"][0]["version"] == "2"
        versions = httpx.get(f"{server.rest_url}/v1/models/a").json()["model_version_status"]
        assert sorted(v["version"] for v in versions) == ["1", "2"]
        assert predict(server.grpc_address, "b", batch_of(1)).model_spec.version.value == 1


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_and_exits_zero(tmp_path: Path) -> None:
    build_test_model(tmp_path / "m" / "1", slow_ops=48)
    with run_model_server(tmp_path / "m", extra_args=["--shutdown_grace_seconds=30"]) as server:
        outcome: dict[str, object] = {}

        def slow_request() -> None:
            try:
                outcome["response"] = predict(server.grpc_address, "clothing-model", batch_of(16))
            except grpc.RpcError as error:
                outcome["error"] = error
            outcome["finished"] = time.monotonic()

        worker = threading.Thread(target=slow_request)
        worker.start()
        # Signal only once the server reports the request in flight, whatever the
        # machine's speed.
        deadline = time.monotonic() + 30
        while not _grpc_request_in_flight(server.rest_url) and "finished" not in outcome:
            assert time.monotonic() < deadline, "the request never showed as in flight"
            time.sleep(0.005)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        worker.join(120)
        assert "error" not in outcome, outcome
        assert float(outcome["finished"]) > signalled  # type: ignore[arg-type]
        assert server.process.wait(60) == 0
        assert "draining" in server.log()


def _grpc_request_in_flight(rest_url: str) -> bool:
    metrics = httpx.get(f"{rest_url}/metrics", timeout=5).text
    for line in metrics.splitlines():
        if line.startswith("model_server_inflight_requests{") and 'transport="grpc"' in line:
            return float(line.rsplit(" ", 1)[1]) >= 1
    return False


def test_unavailable_provider_is_reported(tmp_path: Path) -> None:
    build_test_model(tmp_path / "m" / "1")
    done = subprocess.run(
        model_server_command(
            0,
            0,
            "--model_name=m",
            f"--model_base_path={tmp_path / 'm'}",
            "--execution_providers=tensorrt,cuda",
        ),
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "TensorrtExecutionProvider" in done.stderr
    assert "available: " in done.stderr
    assert "Traceback" not in done.stderr


def test_inspect_prints_the_signature(tmp_path: Path) -> None:
    build_test_model(tmp_path / "m" / "1")
    build_test_model(tmp_path / "m" / "2", height=48, width=64)
    for target in (tmp_path / "m", tmp_path / "m" / "2", tmp_path / "m" / "2" / "model.onnx"):
        done = subprocess.run(
            cli_command("inspect", str(target)),
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "signature_def['serving_default']:" in done.stdout
        assert "inputs['image'] tensor_info:" in done.stdout
        assert "dtype: DT_UINT8" in done.stdout
        assert "shape: (-1, 48, 64, 3)" in done.stdout
        assert "shape: (-1, 10)" in done.stdout
        assert "Method name is: tensorflow/serving/predict" in done.stdout
    missing = subprocess.run(
        cli_command("inspect", str(tmp_path)),
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert "no model.onnx" in missing.stderr
