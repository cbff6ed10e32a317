"""The shared fixtures hold each tier to a clean exit."""

from __future__ import annotations

import pytest

from clothing.processes import free_port
from tests.fixtures import ExitCodeError, run_gateway


def _gateway_killed_inside() -> None:
    with run_gateway(f"127.0.0.1:{free_port()}", wait_for_ready=False) as gateway:
        gateway.process.kill()
        gateway.process.wait()


def test_a_gateway_that_does_not_exit_cleanly_fails_the_test() -> None:
    with pytest.raises(ExitCodeError, match="gateway exited -9, not 0"):
        _gateway_killed_inside()
