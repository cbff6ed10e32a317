"""ONNX Runtime thread counts: parallel batches must not oversubscribe the cores.

"Cores" are the CPUs of the container's quota (``clothing.cgroup.available_cpus``),
which the tests set by patching it where the config looks it up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clothing.gateway.settings import GatewaySettings
from clothing.model_server.backend import OnnxBackend
from clothing.model_server.config import BatchingConfig, ModelConfig, RuntimeConfig
from tests.model_server.conftest import MODEL, ServerFactory

CPUS = "clothing.model_server.config.available_cpus"


@pytest.mark.parametrize(
    ("cores", "batch_threads", "expected"),
    [(2, 2, 1), (2, 1, 2), (16, 16, 1), (16, 4, 4), (16, 3, 5), (4, 8, 1)],
)
def test_auto_threads_share_the_cores_between_batches(
    monkeypatch: pytest.MonkeyPatch, cores: int, batch_threads: int, expected: int
) -> None:
    monkeypatch.setattr(CPUS, lambda: cores)
    batching = BatchingConfig(num_batch_threads=batch_threads)
    assert RuntimeConfig().resolved_for(batching).intra_op_threads == expected


@pytest.mark.parametrize(
    ("cores", "batch_threads", "providers", "expected"),
    [
        (2, 2, ("CPUExecutionProvider",), 2),
        (16, 4, ("cpu",), 16),
        (2, 1, ("CPUExecutionProvider",), 0),  # the one session already has every core
        (2, 2, ("CUDAExecutionProvider", "CPUExecutionProvider"), 0),  # no second GPU copy
    ],
)
def test_a_lone_batch_gets_a_session_with_every_core_on_cpu(
    monkeypatch: pytest.MonkeyPatch,
    cores: int,
    batch_threads: int,
    providers: tuple[str, ...],
    expected: int,
) -> None:
    monkeypatch.setattr(CPUS, lambda: cores)
    runtime = RuntimeConfig(execution_providers=providers)
    batching = BatchingConfig(num_batch_threads=batch_threads)
    assert runtime.resolved_for(batching).solo_intra_op_threads == expected


def test_explicit_threads_are_left_alone() -> None:
    assert RuntimeConfig(intra_op_threads=3).resolved_for(BatchingConfig()).intra_op_threads == 3
    assert RuntimeConfig(intra_op_threads=3).resolved_for(None).intra_op_threads == 3
    explicit = RuntimeConfig(intra_op_threads=1).resolved_for(BatchingConfig(num_batch_threads=2))
    assert explicit.solo_intra_op_threads == 0


def test_without_batching_the_session_gets_a_thread_per_allowed_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not ONNX Runtime's default, which counts the node's cores.
    monkeypatch.setattr(CPUS, lambda: 3)
    assert RuntimeConfig().resolved_for(None).intra_op_threads == 3


def test_gateway_decodes_on_the_allowed_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("clothing.cgroup.available_cpus", lambda: 1)
    assert GatewaySettings().workers == 1
    monkeypatch.setattr("clothing.cgroup.available_cpus", lambda: 16)
    assert GatewaySettings().workers == 4


def _session_threads(backend: object, solo: bool = False) -> int:
    assert isinstance(backend, OnnxBackend)
    # The real session options are the proof.
    session = backend._solo_session if solo else backend._session
    return int(session.get_session_options().intra_op_num_threads)  # type: ignore[attr-defined]


async def test_batching_server_sessions_get_their_share(
    serve: ServerFactory, base_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CPUS, lambda: 4)
    monkeypatch.setattr("clothing.model_server.server.available_cpus", lambda: 4)
    batching = BatchingConfig(num_batch_threads=2)
    async with serve((ModelConfig(MODEL, base_path),), batching=batching) as running:
        (version,) = running.server.repository.model(MODEL).available()
        assert _session_threads(version.backend) == 2
        assert _session_threads(version.backend, solo=True) == 4
