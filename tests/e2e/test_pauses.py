"""Failures that speak up, with real `tracker worker` and `tracker beat` processes: an upstream
that refuses the key (401) or cannot be reached pauses polling with one WARNING, `tracker list`
and `tracker status` say so, and `tracker resume` (or the probe poll, once fixed) lifts it.

Tests wait for conditions with generous deadlines; they never assert that something was fast.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Configure
from tests.processes import Processes
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.migrate import upgrade
from tracker.states import TaskStatus
from tracker.tasks import pauses, queries, register
from tracker.tasks.views import ProviderPauseView
from tracker.testing.simulator import Faults, Simulator, Step, TaskScript

pytestmark = pytest.mark.e2e
DEADLINE_S = 90
TASKS = ("key-1", "key-2", "key-3")


def _cli(group: Processes, *args: str) -> subprocess.CompletedProcess[str]:
    """`tracker ARGS...` as its own process, with the group's settings."""
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        env={**group.env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'pauses.db'}"
    upgrade(url)
    return url


def _script(simulator: Simulator) -> None:
    for task_id in TASKS:
        simulator.add_task(TaskScript(task_id, (Step(2, polls=1), Step(3))))
    with db.session_scope() as session:
        register.register(session, list(TASKS), now=utc_now(), first_poll_delay_s=0)


def _wait_for_pause(url: str, group: Processes, cause: str) -> ProviderPauseView:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        group.check_alive()
        with db.read_scope(url) as session:
            found = pauses.active_pauses(session, now=utc_now())
        if found and found[0].cause == cause:
            return found[0]
        time.sleep(0.3)
    pytest.fail(f"no {cause} pause after {DEADLINE_S} s\n{group.logs()}")


def _wait_until_completed(url: str, group: Processes) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        group.check_alive()
        with db.read_scope(url) as session:
            statuses = {queries.get_task(session, task_id).status for task_id in TASKS}
        if statuses == {TaskStatus.COMPLETED}:
            return
        time.sleep(0.3)
    pytest.fail(f"tasks not completed after {DEADLINE_S} s: {statuses}\n{group.logs()}")


def _pause_warnings(group: Processes, cause: str) -> list[str]:
    return [
        line
        for line in group.logs(tail=200_000).splitlines()
        if f"paused ({cause})" in line and "WARNING" in line
    ]


def test_a_refused_key_pauses_with_one_warning_and_the_probe_lifts_it_once_fixed(
    tmp_path: Path,
    simulator: Simulator,
    processes: Callable[..., Processes],
    configure: Configure,
) -> None:
    url = _sqlite(tmp_path)
    configure(TRACKER_DATABASE_URL=url)
    simulator.set_faults(Faults(auth_status=401))
    _script(simulator)
    group = processes(
        database_url=url,
        broker_url="filesystem://",
        simulator=simulator,
        TRACKER_AUTH_PAUSE_S="1",  # a probe poll every second or so
    )
    group.start("worker", "worker", "--concurrency", "2")
    group.start("beat", "beat")

    _wait_for_pause(url, group, "unauthorized")
    # Probes keep meeting the 401 and extend the same pause: polls, but no new warning.
    deadline = time.monotonic() + DEADLINE_S
    while simulator.stats()["by_outcome"].get("auth", 0) < len(TASKS) + 3:
        group.check_alive()
        assert time.monotonic() < deadline, group.logs()
        time.sleep(0.3)
    listed = _cli(group, "list")
    assert listed.returncode == 0, listed.stderr
    assert "polling of tensorslab is paused (unauthorized)" in listed.stderr
    assert "HTTP 401" in listed.stderr
    status = _cli(group, "status", "key-1", "--json")
    assert '"cause": "unauthorized"' in status.stdout

    simulator.set_faults(None)  # the key is fixed: the next probe poll lifts the pause
    _wait_until_completed(url, group)
    warnings = _pause_warnings(group, "unauthorized")
    assert len(warnings) == 1, group.logs()
    assert "check TENSORSLAB_API_KEY" in warnings[0]
    assert "sim-test-key" not in group.logs(tail=200_000), "the key is never logged"
    with db.read_scope(url) as session:
        assert pauses.active_pauses(session, now=utc_now()) == []


@pytest.fixture(params=["sqlite+filesystem", "postgres+redis"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite+filesystem":
        return _sqlite(tmp_path), "filesystem://"
    postgres = request.getfixturevalue("clean_postgres_url")
    return str(postgres), str(request.getfixturevalue("redis_url"))


def test_tracker_resume_lifts_a_long_pause_at_once(
    stack: tuple[str, str],
    simulator: Simulator,
    processes: Callable[..., Processes],
    configure: Configure,
) -> None:
    url, broker_url = stack
    configure(TRACKER_DATABASE_URL=url)
    simulator.set_faults(Faults(auth_status=403))
    _script(simulator)
    group = processes(database_url=url, broker_url=broker_url, simulator=simulator)
    group.start("worker", "worker", "--concurrency", "2")
    group.start("beat", "beat")

    pause = _wait_for_pause(url, group, "unauthorized")  # the default: 5 minutes
    assert (pause.paused_until - utc_now()).total_seconds() > 200
    listed = _cli(group, "list")
    assert "polling of tensorslab is paused (unauthorized)" in listed.stderr
    simulator.set_faults(None)

    resumed = _cli(group, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed polling of tensorslab (was paused: unauthorized)" in resumed.stdout
    _wait_until_completed(url, group)  # long before the pause would have ended
    assert "paused" not in _cli(group, "list").stderr

    again = _cli(group, "resume")
    assert again.returncode == 4
    assert again.stderr.strip() == ("error: polling of tensorslab is not paused; nothing to resume")
    assert len(_pause_warnings(group, "unauthorized")) == 1, group.logs()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_upstream_pauses_after_the_threshold_with_one_warning(
    tmp_path: Path,
    simulator: Simulator,
    processes: Callable[..., Processes],
    configure: Configure,
) -> None:
    url = _sqlite(tmp_path)
    configure(TRACKER_DATABASE_URL=url)
    _script(simulator)
    group = processes(
        database_url=url,
        broker_url="filesystem://",
        simulator=simulator,
        TENSORSLAB_BASE_URL=f"http://127.0.0.1:{_closed_port()}",  # nothing listens
        TRACKER_UNREACHABLE_AFTER_S="3",
        TRACKER_UNREACHABLE_PAUSE_S="1",  # probes keep failing: the same pause, extended
        TRACKER_ERROR_MAX_BACKOFF_S="0.5",
    )
    group.start("worker", "worker", "--concurrency", "2")
    group.start("beat", "beat")

    pause = _wait_for_pause(url, group, "unreachable")
    assert "connection failed" in pause.reason
    time.sleep(4)  # a few probes, each failing to connect again
    listed = _cli(group, "list")
    assert "polling of tensorslab is paused (unreachable)" in listed.stderr
    warnings = _pause_warnings(group, "unreachable")
    assert len(warnings) == 1, group.logs()
    assert "check TENSORSLAB_BASE_URL" in warnings[0]
    with db.read_scope(url) as session:
        statuses = {queries.get_task(session, task_id).status for task_id in TASKS}
    assert statuses == {TaskStatus.REGISTERED}, "nothing answered: no transition"
