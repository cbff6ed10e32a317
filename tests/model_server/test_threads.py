"""ONNX Runtime thread counts: parallel batches must not oversubscribe the cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from clothing.model_server.backend import OnnxBackend
from clothing.model_server.config import BatchingConfig, ModelConfig, RuntimeConfig
from tests.model_server.conftest import MODEL, ServerFactory


@pytest.mark.parametrize(
    ("cores", "batch_threads", "expected"),
    [(2, 2, 1), (2, 1, 2), (16, 16, 1), (16, 4, 4), (16, 3, 5), (4, 8, 1)],
)
def test_auto_threads_share_the_cores_between_batches(
    monkeypatch: pytest.MonkeyPatch, cores: int, batch_threads: int, expected: int
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    batching = BatchingConfig(num_batch_threads=batch_threads)
    assert RuntimeConfig().resolved_for(batching).intra_op_threads == expected


def test_explicit_threads_and_no_batching_are_left_alone() -> None:
    assert RuntimeConfig(intra_op_threads=3).resolved_for(BatchingConfig()).intra_op_threads == 3
    assert RuntimeConfig().resolved_for(None).intra_op_threads == 0


def _session_threads(backend: object) -> int:
    assert isinstance(backend, OnnxBackend)
    session = backend._session  # the real session options are the proof
    return int(session.get_session_options().intra_op_num_threads)  # type: ignore[attr-defined]


async def test_batching_server_sessions_get_their_share(
    serve: ServerFactory, base_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    batching = BatchingConfig(num_batch_threads=2)
    async with serve((ModelConfig(MODEL, base_path),), batching=batching) as running:
        (version,) = running.server.repository.model(MODEL).available()
        assert _session_threads(version.backend) == 2
