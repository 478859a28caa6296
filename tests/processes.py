"""Child `tracker` processes (worker, beat, api...) for end-to-end tests, with their output kept
in files for when a test fails, and the settings that make them quick to react.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import SIM_API_KEY
from tracker.testing.simulator import Simulator

__all__ = ["Processes", "processes"]


class Processes:
    """Child `tracker` processes, with their output kept in files for when a test fails."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = (self.folder / f"{name}.log").open("ab")
        self.running[name] = subprocess.Popen(
            [sys.executable, "-m", "tracker", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.folder,
            start_new_session=True,  # its own process group, so kill() takes its pool too
        )

    def kill(self, name: str) -> None:
        """SIGKILL the process and its children: a crash, not a shutdown."""
        process = self.running.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self, name: str) -> None:
        process = self.running.pop(name)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.folder.glob("*.log"))
        )

    def check_alive(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}\n{self.logs()}")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., Processes]]:
    made: list[Processes] = []

    def make(
        *, database_url: str, broker_url: str, simulator: Simulator, **extra: str
    ) -> Processes:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("TRACKER_", "TENSORSLAB_"))
        }
        env.update(
            TRACKER_DATA_DIR=str(tmp_path / "data"),
            # Its own queue: another test run sharing this Redis must not take our messages.
            TRACKER_QUEUE=f"tracker-test-{uuid.uuid4().hex[:8]}",
            TRACKER_DATABASE_URL=database_url,
            TRACKER_BROKER_URL=broker_url,
            TENSORSLAB_BASE_URL=simulator.base_url,
            TENSORSLAB_API_KEY=SIM_API_KEY,
            TENSORSLAB_CONNECT_TIMEOUT_S="1",
            TENSORSLAB_READ_TIMEOUT_S="2",
            TRACKER_TICK_INTERVAL_S="0.3",
            TRACKER_POLL_FIRST_DELAY_S="0.2",
            TRACKER_POLL_QUIET_UNTIL_S="0",
            TRACKER_POLL_MIN_INTERVAL_S="0.2",
            TRACKER_POLL_MAX_INTERVAL_S="0.5",
            TRACKER_NOT_FOUND_GRACE_S="3",
            TRACKER_POLL_LEASE_S="6",
            TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
            TRACKER_WEBHOOK_RETRY_SCHEDULE_S="0.5,0.5,0.5",
            TRACKER_WEBHOOK_TIMEOUT_S="3",
            TRACKER_WEBHOOK_LEASE_S="12",
        )
        env.update(extra)
        folder = tmp_path / "processes"
        folder.mkdir(exist_ok=True)
        made.append(Processes(folder, env))
        return made[-1]

    yield make
    for group in made:
        group.stop_all()
