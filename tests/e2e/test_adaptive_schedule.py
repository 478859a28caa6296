"""The adaptive schedule in real processes: `tracker worker` and `tracker beat` read what was
learned of a bucket and hold its tasks' second poll back to the bucket's early age, while a task
of a bucket with nothing learned is polled as usual; `TRACKER_POLL_SCHEDULE=fixed` ignores it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import Processes
from tracker import db
from tracker.db import migrate
from tracker.db.clock import utc_now
from tracker.db.models import ScheduleBucket
from tracker.tasks import queries, register
from tracker.testing.simulator import Simulator, Step, TaskScript
from tracker.testing.simulator.scripts import DETAIL_DEFAULTS

pytestmark = pytest.mark.e2e
DEADLINE_S = 90
EARLY_AGE_S = 9.0  # 10 s less 10 %
RUN_S = 12.0


def _learned_bucket(url: str) -> None:
    """20 tasks of the simulator's default bucket finished 10 s after registration."""
    with db.session_scope(url) as session:
        session.add(
            ScheduleBucket(
                provider="tensorslab",
                model=str(DETAIL_DEFAULTS["source"]),
                resolution=str(DETAIL_DEFAULTS["resolution"]),
                duration_s=int(DETAIL_DEFAULTS["duration"]),
                samples=20,
                ages_s=[10.0] * 20,
                updated_at=utc_now(),
            )
        )


def _start(url: str, simulator: Simulator, task_id: str, details: dict[str, str | int]) -> None:
    simulator.add_task(TaskScript(task_id, (Step(2, after_s=RUN_S), Step(3)), details=details))
    with db.session_scope(url) as session:
        register.register(session, [task_id], now=utc_now(), first_poll_delay_s=0)


def _second_poll_age_s(url: str, task_id: str, group: Processes) -> float:
    """The age its next poll is due at, read once its first poll is written."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        group.check_alive()
        with db.read_scope(url) as session:
            task = queries.get_task(session, task_id)
        if task.poll_count >= 1 and task.next_poll_at is not None:
            return (task.next_poll_at - task.created_at).total_seconds()
        time.sleep(0.05)
    pytest.fail(f"{task_id} was not polled within {DEADLINE_S} s\n{group.logs()}")


def _wait_until_completed(url: str, task_ids: list[str], group: Processes) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        group.check_alive()
        with db.read_scope(url) as session:
            if all(queries.get_task(session, t).status.is_terminal for t in task_ids):
                return
        time.sleep(0.3)
    pytest.fail(f"tasks not terminal after {DEADLINE_S} s\n{group.logs()}")


@pytest.mark.parametrize("schedule", ["adaptive", "fixed"])
def test_a_worker_holds_a_learned_buckets_second_poll_back_to_its_early_age(
    schedule: str,
    tmp_path: Path,
    simulator: Simulator,
    processes: Callable[..., Processes],
) -> None:
    url = f"sqlite:///{tmp_path / 'adaptive.db'}"
    migrate.upgrade(url)
    _learned_bucket(url)
    _start(url, simulator, "learned", dict(DETAIL_DEFAULTS))
    _start(url, simulator, "unlearned", {**DETAIL_DEFAULTS, "resolution": "1080p"})
    group = processes(
        database_url=url,
        broker_url="filesystem://",
        simulator=simulator,
        TRACKER_POLL_SCHEDULE=schedule,
    )
    group.start("worker", "worker", "--concurrency", "1")
    group.start("beat", "beat")

    learned_at_s = _second_poll_age_s(url, "learned", group)
    unlearned_at_s = _second_poll_age_s(url, "unlearned", group)
    _wait_until_completed(url, ["learned", "unlearned"], group)

    assert unlearned_at_s < EARLY_AGE_S - 0.5  # TRACKER_POLL_MAX_INTERVAL_S 0.5: as usual
    polls = {t: simulator.task_state(t)["polls"] for t in ("learned", "unlearned")}
    if schedule == "fixed":
        assert learned_at_s < EARLY_AGE_S - 0.5
        return
    assert EARLY_AGE_S - 0.5 <= learned_at_s <= EARLY_AGE_S  # held back, one interval of jitter
    assert polls["learned"] < polls["unlearned"], polls
    logged = group.wait_for_line("worker", "task learned: bucket ")
    assert logged.endswith(
        "task learned: bucket tensorslab tensorslab-sim 720p 5s: next poll at age 9 s "
        "(learned early age)"
    ), logged
