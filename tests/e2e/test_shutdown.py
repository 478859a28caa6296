"""Stopping `tracker up` (and `tracker worker`) ends every one of its processes, and a crash of
`tracker up` leaves none behind: real processes, on SQLite and the embedded broker.

Each test collects the whole process tree once it runs (the worker's pool children and
embedded beat, the API), signals it the way systemd, `docker stop` or a crash would, and waits
with a generous deadline until every collected process is gone (a zombie counts as gone).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests

import tracker
from tests.processes import Processes
from tracker.db import migrate
from tracker.testing.simulator import Simulator

pytestmark = pytest.mark.e2e

CONCURRENCY = 2
GRACE_S = 8.0  # TRACKER_SHUTDOWN_GRACE_S, its default
GONE_WITHIN_S = GRACE_S + 30  # generous: a deadline for a stop that must end, not a speed test
START_WITHIN_S = 90.0
ROUNDS = 3  # the hang this guards against came 1 time in 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _describe(processes: list[psutil.Process]) -> str:
    lines = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            lines.append(f"{process.pid} ({process.status()}): {' '.join(process.cmdline())}")
    return "\n".join(lines)


@pytest.fixture
def seen() -> Iterator[list[psutil.Process]]:
    """Every process a test saw; whatever of it (or its children) still runs is killed after."""
    collected: list[psutil.Process] = []
    yield collected
    leftovers = [process for process in collected if _alive(process)]
    for process in list(leftovers):
        with contextlib.suppress(psutil.Error):
            leftovers += process.children(recursive=True)
    for process in leftovers:
        with contextlib.suppress(psutil.Error):
            process.kill()  # psutil checks it is still the same process, not a reused PID
    deadline = time.monotonic() + 10
    while any(_alive(process) for process in leftovers) and time.monotonic() < deadline:
        time.sleep(0.1)  # not psutil.wait_procs: the `processes` fixture reaps its own children


@pytest.fixture
def group(tmp_path: Path, simulator: Simulator, processes: Callable[..., Processes]) -> Processes:
    database_url = f"sqlite:///{tmp_path / 't.db'}"
    migrate.upgrade(database_url)
    # The children import the tracker under test, not whichever one is installed.
    package_root = str(Path(tracker.__file__).resolve().parent.parent)
    python_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    return processes(
        database_url=database_url,
        broker_url="filesystem://",
        simulator=simulator,
        TRACKER_API_PORT=str(_free_port()),
        TRACKER_SHUTDOWN_GRACE_S=str(GRACE_S),
        PYTHONPATH=python_path,
    )


def _api_answers(group: Processes) -> bool:
    try:
        url = f"http://127.0.0.1:{group.env['TRACKER_API_PORT']}/healthz"
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def _forks(tree: list[psutil.Process]) -> list[psutil.Process]:
    """The processes of the tree that are forks of a worker (pool children, embedded beat):
    the same command line as their parent, where an executed child (the API) has its own."""
    by_pid = {process.pid: process for process in tree}
    found = []
    for process in tree:
        with contextlib.suppress(psutil.Error):
            parent = by_pid.get(process.ppid())
            if parent is not None and process.cmdline() == parent.cmdline():
                found.append(process)
    return found


def _start(
    group: Processes, seen: list[psutil.Process], name: str, *args: str, forks: int, api: bool
) -> list[psutil.Process]:
    """Start `tracker ARGS...`; its whole process tree once it is running, root first."""
    group.start(name, *args)
    root = psutil.Process(group.running[name].pid)
    seen.append(root)
    deadline = time.monotonic() + START_WITHIN_S
    while True:
        group.check_alive()
        with contextlib.suppress(psutil.Error):
            tree = [root, *root.children(recursive=True)]
            seen.extend(process for process in tree if process not in seen)
            if len(_forks(tree)) >= forks and (not api or _api_answers(group)):
                return tree
        if time.monotonic() > deadline:
            pytest.fail(f"{name} did not start in {START_WITHIN_S:g} s\n{group.logs()}")
        time.sleep(0.2)


def _assert_gone(
    tree: list[psutil.Process], group: Processes, what: str, *, within_s: float = GONE_WITHIN_S
) -> None:
    deadline = time.monotonic() + within_s
    while (alive := [process for process in tree if _alive(process)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert not alive, (
        f"{what}: still alive {within_s:g} s later:\n{_describe(alive)}\n{group.logs()}"
    )


def _reap(group: Processes, name: str) -> None:
    group.running.pop(name).wait(timeout=10)


def _sigterm_process_group(tree: list[psutil.Process]) -> None:
    os.killpg(os.getpgid(tree[0].pid), signal.SIGTERM)  # systemd's main PID, `kill -- -PGID`


def _sigterm_every_process(tree: list[psutil.Process]) -> None:
    for process in tree:  # systemd's KillMode=control-group: the whole cgroup at once
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGTERM)


@pytest.mark.parametrize(
    "stop",
    [_sigterm_process_group, _sigterm_every_process],
    ids=["sigterm-to-process-group", "sigterm-to-every-process"],
)
def test_sigterm_ends_every_process_of_up(
    group: Processes, seen: list[psutil.Process], stop: Callable[[list[psutil.Process]], None]
) -> None:
    for round_ in range(1, ROUNDS + 1):
        name = f"up-{round_}"
        tree = _start(
            group, seen, name, "up", f"--concurrency={CONCURRENCY}", forks=CONCURRENCY + 1, api=True
        )
        stop(tree)
        _assert_gone(tree, group, f"round {round_}: after SIGTERM, tracker up")
        _reap(group, name)


@pytest.mark.parametrize("command", ["worker", "up"])
def test_a_worker_with_stuck_pool_processes_still_ends(
    group: Processes, seen: list[psutil.Process], command: str
) -> None:
    # SIGSTOP stands for a task that never returns (or a pool child in uninterruptible sleep):
    # a warm shutdown would wait for it for ever. Only the grace period can end this one.
    forks = CONCURRENCY + (1 if command == "up" else 0)
    tree = _start(
        group,
        seen,
        command,
        command,
        f"--concurrency={CONCURRENCY}",
        forks=forks,
        api=command == "up",
    )
    stuck = _forks(tree)
    for process in stuck:
        process.send_signal(signal.SIGSTOP)
    _sigterm_process_group(tree)
    _assert_gone(tree, group, f"after SIGTERM, tracker {command} with stuck pool processes")
    _reap(group, command)


def test_a_killed_up_leaves_nothing_behind_and_up_starts_again(
    group: Processes, seen: list[psutil.Process]
) -> None:
    tree = _start(
        group, seen, "up", "up", f"--concurrency={CONCURRENCY}", forks=CONCURRENCY + 1, api=True
    )
    tree[0].kill()  # only `tracker up` itself: a crash, or the OOM killer
    _reap(group, "up")
    _assert_gone(tree[1:], group, "after SIGKILL of tracker up, its children")

    again = _start(
        group,
        seen,
        "up-again",
        "up",
        f"--concurrency={CONCURRENCY}",
        forks=CONCURRENCY + 1,
        api=True,
    )
    assert _api_answers(group)
    assert "already in use" not in (group.folder / "up-again.log").read_text()
    _sigterm_process_group(again)
    _assert_gone(again, group, "after SIGTERM, the second tracker up")
    _reap(group, "up-again")


def test_up_stops_everything_and_fails_when_a_child_dies(
    group: Processes, seen: list[psutil.Process]
) -> None:
    tree = _start(
        group, seen, "up", "up", f"--concurrency={CONCURRENCY}", forks=CONCURRENCY + 1, api=True
    )
    [api] = [process for process in tree[1:] if "api" in process.cmdline()]
    api.kill()
    _assert_gone(tree, group, "after the API died, tracker up")
    up = group.running.pop("up")
    assert up.wait(timeout=10) != 0
