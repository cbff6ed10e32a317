"""Result rows and a small run's results, as the runner writes them, for report tests."""

from typing import Any

from clothing.benchmarks.runner import add_ratios


def row(
    level: int,
    system: str,
    concurrency: int,
    images_per_s: float,
    *,
    size: str = "tensor",
    payload: str = "tensor",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "level": level,
        "system": system,
        "size": size,
        "payload": payload,
        "concurrency": concurrency,
        "requests": 10,
        "errors": 0,
        "elapsed_s": 1.0,
        "throughput_rps": images_per_s,
        "images_per_s": images_per_s,
        "p50_ms": 10.0,
        "p99_ms": 20.0,
        "first_error": None,
        **extra,
    }


def sample_results() -> dict[str, Any]:
    rows = [
        row(1, "model-server+batching", 1, 50.0, ratio_to_ceiling=0.5),
        row(
            1,
            "model-server+batching",
            4,
            90.0,
            ratio_to_ceiling=0.9,
            ratio_to_ceiling_range=[0.85, 0.95],
        ),
        row(2, "ours", 1, 30.0, size="phone", payload="b64"),
        row(2, "ours", 4, 60.0, size="phone", payload="b64", block_images_per_s=[55.0, 65.0]),
        row(2, "baseline", 1, 20.0, size="phone", payload="b64"),
        row(2, "baseline", 4, 40.0, size="phone", payload="b64", block_images_per_s=[50.0, 30.0]),
        row(2, "litserve", 4, 0.0, size="phone", payload="b64"),
        row(
            2,
            "photo-ceiling",
            4,
            100.0,
            size="phone",
            payload="b64",
            block_images_per_s=[110.0, 90.0],
        ),
    ]
    add_ratios(rows)
    return {
        "timestamp": "20250101T000000Z",
        "machine": {"cpu_model": "Test CPU", "nproc": 2, "memory_gib": 4.0},
        "config": {"device": "cpu", "requests": 10},
        "model": {"path": "m/1/model.onnx", "width": 224, "height": 224},
        "level1": {
            "ceiling": {"images_per_s": 100.0, "best_batch": 8},
            "bare_run": {"p50_ms": 4.0},
            "c1_p50_over_bare_ms": {"model-server+batching": 0.8},
        },
        "preprocessing": {
            "phone": {
                "photo_width": 1500,
                "photo_height": 2000,
                "gateway_ms": 10.0,
                "plain_pillow_ms": 50.0,
                "speedup": 5.0,
            }
        },
        "rows": rows,
    }
