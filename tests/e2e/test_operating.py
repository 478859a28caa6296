"""Operating tracker with real processes: heartbeats of a real worker and beat, overdue tasks
when beat is missing, and `tracker doctor` on a healthy stack and with the broker down.

Tests wait for conditions with generous deadlines; they never assert that something was fast.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import SIM_API_KEY
from tests.processes import Processes
from tracker import db
from tracker.db import migrate
from tracker.db.clock import utc_now
from tracker.ops import heartbeats
from tracker.testing.processes import tracker_command
from tracker.testing.simulator import Simulator, Step, TaskScript

pytestmark = pytest.mark.e2e
DEADLINE_S = 90
# Heartbeats every 0.5 s; with ticks of 0.3 s a process is gone after 3 s (10 ticks).
FAST_HEARTBEATS = {"TRACKER_HEARTBEAT_INTERVAL_S": "0.5"}
CHECKS = [
    "settings", "database", "migrations", "broker", "upstream", "beat", "workers", "overdue",
    "webhooks", "pauses", "disk", "disk",
]  # fmt: skip


def _tracker(group: Processes, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tracker_command(*args),
        env={**group.env, **env},
        cwd=group.folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _until(condition: Callable[[], object], group: Processes, what: str) -> object:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        group.check_alive()
        result = condition()
        if result:
            return result
        time.sleep(0.3)
    pytest.fail(f"{what}: not within {DEADLINE_S} s\n{group.logs()}")


def _processes(url: str) -> list[heartbeats.ProcessView]:
    with db.read_scope(url) as session:
        return heartbeats.list_processes(session, now=utc_now(), gone_after_s=3.0)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    migrate.upgrade(url)
    return url


def test_a_worker_without_beat_makes_status_say_overdue_and_name_beat(
    sqlite_url: str, simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    simulator.add_task(TaskScript("ops-late", (Step(1, polls=1), Step(3)), urls=("https://x/1",)))
    group = processes(
        database_url=sqlite_url, broker_url="filesystem://", simulator=simulator, **FAST_HEARTBEATS
    )
    group.start("worker", "worker", "--concurrency", "1")
    _until(lambda: any(p.alive for p in _processes(sqlite_url)), group, "the worker's heartbeat")
    assert _tracker(group, "register", "ops-late").returncode == 0

    status = _until(
        lambda: (run := _tracker(group, "status", "ops-late")).stderr.count("overdue by") and run,
        group,
        "`tracker status` saying overdue",
    )
    assert isinstance(status, subprocess.CompletedProcess) and status.returncode == 0
    assert "no beat has ticked yet: is `tracker beat` running?" in status.stderr
    listed = _tracker(group, "list")
    assert "1 task overdue (the oldest by" in listed.stderr
    assert "is `tracker beat` running?" in listed.stderr

    group.start("beat", "beat")  # what the note asked for: the task is polled, the note goes
    _until(
        lambda: (
            "completed" in (run := _tracker(group, "status", "ops-late")).stdout
            and "overdue" not in run.stderr
        ),
        group,
        "the task completed once beat runs",
    )


def test_doctor_passes_on_a_healthy_stack_and_names_a_broker_that_is_down(
    sqlite_url: str, simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    simulator.add_task(TaskScript("ops-done", (Step(1, polls=1), Step(3)), urls=("https://x/2",)))
    group = processes(
        database_url=sqlite_url, broker_url="filesystem://", simulator=simulator, **FAST_HEARTBEATS
    )
    worker = group.start("worker", "worker", "--concurrency", "1")
    beat = group.start("beat", "beat")
    assert _tracker(group, "register", "ops-done").returncode == 0

    # The real processes' rows: who they are, and the worker's last batch.
    def recorded() -> dict[str, heartbeats.ProcessView]:
        alive = {p.kind: p for p in _processes(sqlite_url) if p.alive}
        worker_row = alive.get("worker")
        if "beat" in alive and worker_row and (worker_row.last_batch or {}).get("ended"):
            return alive
        return {}

    rows = _until(recorded, group, "heartbeats of beat and of a worker that finished a task")
    assert isinstance(rows, dict)
    assert (rows["beat"].pid, rows["worker"].pid) == (beat.pid, worker.pid)
    assert (
        rows["worker"].queue
        == f"{group.env['TRACKER_QUEUE']},{group.env['TRACKER_QUEUE']}.webhooks"
    )
    assert rows["worker"].last_batch == {
        "polled": 1,
        "ended": 1,
        "skipped": 0,
        "released": 0,
        "deferred": 0,
    }

    healthy = _tracker(group, "doctor")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    lines = healthy.stdout.splitlines()
    assert [line.split(":")[0].split()[-1] for line in lines[:-1]] == CHECKS
    assert all(line.startswith("ok ") for line in lines[:-1]), healthy.stdout
    assert lines[-1] == "all checks passed"
    assert SIM_API_KEY not in healthy.stdout + healthy.stderr

    as_json = _tracker(group, "doctor", "--json")
    assert as_json.returncode == 0
    report = json.loads(as_json.stdout)
    assert report["ok"] is True
    assert [check["name"] for check in report["checks"]] == CHECKS
    assert all(set(check) == {"name", "status", "detail", "fix"} for check in report["checks"])
    assert {check["status"] for check in report["checks"]} == {"ok"}

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    down = _tracker(group, "doctor", TRACKER_BROKER_URL=f"redis://127.0.0.1:{closed}/0")
    assert down.returncode == 1
    [broker_line] = [line for line in down.stdout.splitlines() if " broker:" in line]
    assert broker_line.startswith("FAIL  broker: cannot reach the broker at redis://")
    assert f"127.0.0.1:{closed}" in broker_line
    assert broker_line.endswith("→ start the broker (Redis) or fix TRACKER_BROKER_URL")
    # One disk line only: a Redis broker is a server, watched on its own disk.
    assert down.stdout.splitlines()[-1] == "1 of 11 checks failed"
    down_json = json.loads(
        _tracker(
            group, "doctor", "--json", TRACKER_BROKER_URL=f"redis://127.0.0.1:{closed}/0"
        ).stdout
    )
    assert down_json["ok"] is False
    assert [c["name"] for c in down_json["checks"] if c["status"] == "fail"] == ["broker"]

    # Stopped processes stay listed, as gone, and doctor says what to start.
    group.stop("beat")
    group.stop("worker")
    _until(lambda: all(not p.alive for p in _processes(sqlite_url)), group, "both shown as gone")
    assert {p.pid for p in _processes(sqlite_url)} == {beat.pid, worker.pid}
    stopped = _tracker(group, "doctor")
    assert stopped.returncode == 1
    failed = [line for line in stopped.stdout.splitlines() if line.startswith("FAIL")]
    assert [line.split(":")[0] for line in failed] == ["FAIL  beat", "FAIL  workers"]
    assert "no beat has ticked since" in failed[0] and "start `tracker beat`" in failed[0]
    assert "start `tracker worker`" in failed[1]


@pytest.fixture(params=["sqlite+filesystem", "postgres+redis"])
def stack(request: pytest.FixtureRequest, sqlite_url: str) -> tuple[str, str]:
    if request.param == "sqlite+filesystem":
        return sqlite_url, "filesystem://"
    postgres = request.getfixturevalue("clean_postgres_url")
    return str(postgres), str(request.getfixturevalue("redis_url"))


def test_a_worker_with_beat_inside_records_both_heartbeats_and_polls(
    stack: tuple[str, str], simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    # `tracker up` runs beat inside the poll worker, as a process forked from it: one that
    # inherited the worker's open SQLite connection failed every write ("locking protocol").
    database_url, broker_url = stack
    simulator.add_task(TaskScript("ops-up", (Step(1, polls=1), Step(3)), urls=("https://x/3",)))
    group = processes(
        database_url=database_url, broker_url=broker_url, simulator=simulator, **FAST_HEARTBEATS
    )
    worker = group.start("worker", "worker", "--beat", "--queues", "polls", "-c", "1")
    assert _tracker(group, "register", "ops-up").returncode == 0

    def both() -> dict[str, heartbeats.ProcessView]:
        alive = {p.kind: p for p in _processes(database_url) if p.alive}
        polled = (alive.get("polls") and alive["polls"].last_batch) or {}
        return alive if "beat" in alive and polled.get("ended") else {}

    rows = _until(both, group, "beat's and the poll worker's heartbeats, and a batch")
    assert isinstance(rows, dict) and set(rows) == {"beat", "polls"}
    assert rows["polls"].pid == worker.pid and rows["polls"].queue == group.env["TRACKER_QUEUE"]
    assert rows["beat"].pid != worker.pid  # its own process
    assert "completed" in _tracker(group, "status", "ops-up").stdout
    assert "locking protocol" not in group.log("worker", tail=100_000)
    assert "could not record" not in group.log("worker", tail=100_000)
