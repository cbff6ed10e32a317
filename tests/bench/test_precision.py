"""Both precisions: `clothing bench --precision`, and `clothing speed` in process."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from clothing.bench_cli import _config
from clothing.benchmarks.precision import compare, format_table
from clothing.cli import build_parser, main
from clothing.precision.quantize import Calibration, to_int8
from tests.bench.test_smoke import _bench, _processes_mentioning
from tests.fixtures import build_test_model


def _int8_copy(source_dir: Path, target_dir: Path) -> Path:
    """An int8 copy of the test model in ``target_dir`` (calibrated on random pixels)."""
    source = build_test_model(source_dir)
    pixels = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    target_dir.mkdir(parents=True)
    onnx.save(to_int8(source, Calibration("image", pixels)), str(target_dir / "model.onnx"))
    metadata = json.loads((source_dir / "metadata.json").read_text())
    (target_dir / "metadata.json").write_text(json.dumps(metadata | {"precision": "int8"}))
    return target_dir


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], "models/clothing-model"),
        (["--precision=int8"], "models/clothing-model-int8"),
        (["--precision=int8", "--model-base-path=elsewhere"], "elsewhere"),
    ],
)
def test_precision_picks_the_copy_every_system_serves(flags: list[str], expected: str) -> None:
    args = build_parser().parse_args(["bench", *flags])
    assert _config(args).model_base_path == Path(expected)


def test_two_copies_are_compared_cell_by_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _int8_copy(tmp_path / "float32" / "1", tmp_path / "int8" / "1")
    cells = compare(tmp_path / "float32", tmp_path / "int8", rounds=2, seconds=0.05)
    assert [(cell.threads, cell.batch_size) for cell in cells] == [(1, 8), (1, 1), (2, 8), (2, 1)]
    for cell in cells:
        assert len(cell.baseline) == len(cell.candidate) == 2
        assert min(cell.baseline + cell.candidate) > 0
        assert cell.ratio == pytest.approx(np.mean(cell.candidate) / np.mean(cell.baseline))
    assert "| 2 | 1 |" in format_table(cells, ("float32", "int8"))

    figures = tmp_path / "speed.json"
    flags = [f"--baseline={tmp_path / 'float32'}", f"--candidate={tmp_path / 'int8'}"]
    assert (
        main(
            [
                "speed",
                *flags,
                "--threads=1",
                "--batch-sizes=4",
                "--rounds=2",
                "--seconds=0.05",
                f"--json={figures}",
            ]
        )
        == 0
    )
    assert "int8 ÷ float32" in capsys.readouterr().out
    (cell,) = json.loads(figures.read_text())["cells"]
    assert len(cell["round_ratios"]) == 2
    assert main(["speed", f"--baseline={tmp_path / 'none'}", flags[1]]) == 2


@pytest.mark.slow
def test_bench_measures_an_int8_copy_at_both_levels(tmp_path: Path) -> None:
    model = _int8_copy(tmp_path / "float32" / "1", tmp_path / "int8" / "1").parent
    output = tmp_path / "results"
    done = _bench(
        "--smoke",
        "--precision=int8",
        f"--model-base-path={model}",
        f"--output={output}",
        "--systems=model-server+batching,ours",
        "--sizes=dataset",
        "--payloads=b64",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert _processes_mentioning(str(model)) == []
    (json_path,) = output.glob("*.json")
    results = json.loads(json_path.read_text())
    assert results["model"]["precision"] == "int8"
    measured = {(row["level"], row["system"]) for row in results["rows"]}
    assert {(1, "model-server+batching"), (2, "ours")} <= measured
    assert all(row["errors"] == 0 for row in results["rows"])
    assert "(int8)" in done.stdout
    assert ", int8)" in (output / results["files"]["markdown"]).read_text()
