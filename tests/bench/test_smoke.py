"""`clothing bench --smoke`: every system started, driven and stopped; files written."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures import build_test_model, cli_command

REPO_ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command("bench", "--no-progress", *args),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


@pytest.mark.slow
def test_smoke_run_measures_every_system_and_cleans_up(tmp_path):
    model = tmp_path / "model"
    build_test_model(model / "1", height=32, width=32)
    output = tmp_path / "results"
    done = _bench("--smoke", f"--model-base-path={model}", f"--output={output}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _processes_mentioning(str(model)) == []

    (json_path,) = output.glob("*.json")
    results = json.loads(json_path.read_text())
    measured = {(row["level"], row["system"]) for row in results["rows"]}
    assert measured == {
        (1, "model-server"),
        (1, "model-server+batching"),
        (2, "ours"),
        (2, "ours-no-batching"),
        (2, "photo-ceiling"),
        (2, "baseline"),
        (2, "litserve"),
        (2, "direct-grpc"),
    }
    failures = [row for row in results["rows"] if row["errors"]]
    assert failures == []
    for row in results["rows"]:
        assert row["requests"] > 0
        assert row["p50_ms"] > 0
    assert results["level1"]["ceiling"]["images_per_s"] > 0
    for row in results["rows"]:
        if row["level"] == 1:  # each cell has its own ceiling, measured just before it
            assert row["ceiling_images_per_s"] > 0
            assert row["ratio_to_ceiling"] == pytest.approx(
                row["images_per_s"] / row["ceiling_images_per_s"], rel=0.05, abs=0.002
            )
    for row in results["rows"]:
        if row["level"] == 2 and row["system"] not in ("photo-ceiling", "direct-grpc"):
            assert row["vs_ceiling"] > 0
    assert set(results["preprocessing"]) == {"dataset", "phone"}
    assert set(results["gateway_overhead"]) == {"dataset", "phone"}
    # Smoke concurrencies stop below 16: only c=1 latency and preprocessing are judged.
    judged = {verdict["target"].split(":")[0] for verdict in results["targets"]}
    assert judged == {"level 1, c=1", "preprocessing, phone-size"}
    assert {verdict["outcome"] for verdict in results["targets"]} <= {"met", "missed"}
    markdown = (output / results["files"]["markdown"]).read_text()
    assert "## Level 1" in markdown
    assert "## Level 2" in markdown
    assert "## Targets" in markdown
    assert len(results["files"]["plots"]) == 5  # level 1 + 2 sizes x 2 payloads
    for name in results["files"]["plots"]:
        with Image.open(output / name) as image:
            assert image.format == "PNG"
    assert "ceiling" in done.stdout
    assert "baseline" in done.stdout


def test_missing_model_is_a_clear_error(tmp_path):
    done = _bench("--smoke", f"--model-base-path={tmp_path / 'nothing'}", f"--output={tmp_path}")
    assert done.returncode == 2
    assert "is not a directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_flags_are_rejected(tmp_path):
    done = _bench("--concurrency=1,x", f"--output={tmp_path}")
    assert done.returncode == 2
    assert "comma-separated integers" in done.stderr
    done = _bench("--systems=tgi", f"--output={tmp_path}")
    assert done.returncode == 2
    assert "unknown system" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("device", "provider"),
    [("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")],
)
def test_a_gpu_device_without_its_provider_is_a_clear_error(tmp_path, device, provider):
    import onnxruntime

    if provider in onnxruntime.get_available_providers():
        pytest.skip(f"this machine has the {provider}")
    build_test_model(tmp_path / "m" / "1")
    done = _bench("--smoke", f"--device={device}", f"--model-base-path={tmp_path / 'm'}")
    assert done.returncode == 2
    assert f"--device {device} needs onnxruntime-gpu with the {provider}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_sigterm_mid_run_stops_every_system(tmp_path):
    model = tmp_path / "model"
    build_test_model(model / "1", height=32, width=32)
    flags = ["--levels=2", "--duration=60", f"--model-base-path={model}", f"--output={tmp_path}"]
    bench = subprocess.Popen(
        cli_command("bench", "--no-progress", *flags),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        # Wait until the systems are up and being driven: the level-2 apps are running.
        while time.monotonic() < deadline and len(_processes_mentioning(str(model))) < 4:
            time.sleep(0.5)
        assert len(_processes_mentioning(str(model))) >= 4
        time.sleep(2)
        bench.send_signal(signal.SIGTERM)
        _, stderr = bench.communicate(timeout=90)
    finally:
        bench.kill()
        bench.communicate()  # closes the pipes even when the wait above timed out
    assert bench.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    assert _processes_mentioning(str(model)) == []
