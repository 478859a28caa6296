"""Child `tracker` processes (worker, beat, api...) for end-to-end tests, with their output kept
in files for when a test fails, and the settings that make them quick to react.

The launching itself is `tracker.testing.processes.ChildProcesses`; here a child that died
fails the test loudly.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import SIM_API_KEY
from tracker.testing.processes import ChildExited, ChildProcesses, child_environment
from tracker.testing.simulator import Simulator

__all__ = ["Processes", "processes"]


class Processes(ChildProcesses):
    """Child `tracker` processes, with their output kept in files for when a test fails.

    `start(name, *args)` runs `python -m tracker ARGS...`; `stop(name)` is a graceful SIGTERM,
    `kill(name)` a crash (SIGKILL of its process group); `logs()` has every process's output.
    """

    def check_alive(self) -> None:
        """Fail the test, with every log, if a process that should be running has exited."""
        try:
            super().check_alive()
        except ChildExited as error:
            pytest.fail(str(error))


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., Processes]]:
    made: list[Processes] = []

    def make(
        *, database_url: str, broker_url: str, simulator: Simulator, **extra: str
    ) -> Processes:
        env = child_environment(
            {
                "TRACKER_DATA_DIR": str(tmp_path / "data"),
                # Its own queue: another test run sharing this Redis must not take our messages.
                "TRACKER_QUEUE": f"tracker-test-{uuid.uuid4().hex[:8]}",
                "TRACKER_DATABASE_URL": database_url,
                "TRACKER_BROKER_URL": broker_url,
                "TENSORSLAB_BASE_URL": simulator.base_url,
                "TENSORSLAB_API_KEY": SIM_API_KEY,
                "TENSORSLAB_CONNECT_TIMEOUT_S": "1",
                "TENSORSLAB_READ_TIMEOUT_S": "2",
                "TRACKER_TICK_INTERVAL_S": "0.3",
                "TRACKER_POLL_FIRST_DELAY_S": "0.2",
                "TRACKER_POLL_QUIET_UNTIL_S": "0",
                "TRACKER_POLL_MIN_INTERVAL_S": "0.2",
                "TRACKER_POLL_MAX_INTERVAL_S": "0.5",
                "TRACKER_NOT_FOUND_GRACE_S": "3",
                "TRACKER_POLL_LEASE_S": "6",
                "TRACKER_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
                "TRACKER_WEBHOOK_RETRY_SCHEDULE_S": "0.5,0.5,0.5",
                "TRACKER_WEBHOOK_TIMEOUT_S": "3",
                "TRACKER_WEBHOOK_LEASE_S": "12",
                **extra,
            }
        )
        folder = tmp_path / "processes"
        folder.mkdir(exist_ok=True)
        made.append(Processes(folder, env))
        return made[-1]

    yield make
    for group in made:
        group.stop_all()
