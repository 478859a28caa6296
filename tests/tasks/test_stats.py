"""`compute_stats` and `watch_snapshot` on SQLite and PostgreSQL.

The percentile tests build a known history: tasks are registered and untracked through
`service`, and the rows a poll writes when it sees a status change (the transition, and the
task's status, completed_at and poll_count, as `polling._write_outcome` writes them) are inserted
directly at chosen times, so each figure has a value to check by hand. One test runs real polls
against the simulator to check the figures against what the poller actually stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, update

from tests.conftest import SIM_API_KEY
from tests.support import poll_until_terminal, reschedule
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import TrackedTask, Transition
from tracker.errors import InvalidTaskId, UnknownTask
from tracker.states import TaskStatus
from tracker.tasks import queries, register, untrack
from tracker.tasks.stats import Distribution, compute_stats, time_to_result_histogram
from tracker.tasks.watch import watch_snapshot
from tracker.testing.simulator import Simulator, Step, TaskScript
from tracker.upstream.tensorslab import TensorsLabClient

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _register(url: str, task_id: str, at: datetime) -> None:
    with db.session_scope(url) as session:
        register.register(session, [task_id], now=at, first_poll_delay_s=5)


def _polled(
    url: str, task_id: str, moves: list[tuple[TaskStatus, datetime]], *, polls: int
) -> None:
    """Store what the poller stores for these status changes, ending with `polls` polls."""
    with db.session_scope(url) as session:
        row = session.scalars(select(TrackedTask).where(TrackedTask.task_id == task_id)).one()
        previous = TaskStatus(row.status)
        for status, at in moves:
            session.execute(
                insert(Transition).values(
                    task_pk=row.id,
                    from_status=previous.value,
                    to_status=status.value,
                    occurred_at=at,
                    upstream_payload={"code": 1000},
                    note=None,
                )
            )
            previous = status
        final_at = moves[-1][1]
        session.execute(
            update(TrackedTask)
            .where(TrackedTask.id == row.id)
            .values(
                status=previous.value,
                poll_count=polls,
                last_polled_at=final_at,
                updated_at=final_at,
                completed_at=final_at if previous.is_terminal else None,
            )
        )
        reschedule(session, None if previous.is_terminal else final_at, row.task_id)


def _known_history(url: str) -> None:
    """20 tasks that end completed or failed, plus some that must not count in the figures.

    Task i (1..20) is registered at T0, seen pending at T0+50 s, processing at T0+100 s, and
    finished at T0+100+i s after i polls; except task 20, whose first poll already saw it
    completed at T0+120 s. Task 7 failed instead of completing.
    So, over the 20: polls 1..20; registration -> result 101..120 s; last live status -> result
    1..19 s and 120 s (task 20 had no live status after registration).
    """
    for i in range(1, 21):
        task_id = f"task-{i:02d}"
        _register(url, task_id, T0)
        end = TaskStatus.FAILED if i == 7 else TaskStatus.COMPLETED
        finished_at = T0 + timedelta(seconds=100 + i)
        if i == 20:
            _polled(url, task_id, [(end, finished_at)], polls=i)
        else:
            moves = [
                (TaskStatus.PENDING, T0 + timedelta(seconds=50)),
                (TaskStatus.PROCESSING, T0 + timedelta(seconds=100)),
                (end, finished_at),
            ]
            _polled(url, task_id, moves, polls=i)
    # Not finished by upstream: counted by status and in total_polls, not in the figures.
    _register(url, "live", T0)
    _polled(url, "live", [(TaskStatus.PROCESSING, T0 + timedelta(seconds=30))], polls=4)
    _register(url, "gave-up", T0)
    _polled(url, "gave-up", [(TaskStatus.PENDING, T0 + timedelta(seconds=10))], polls=3)
    with db.session_scope(url) as session:
        untrack.untrack(session, "gave-up", now=T0 + timedelta(seconds=400))
    _register(url, "never-polled", T0)


def test_no_tasks_gives_zero_counts_and_no_figures(database_url: str) -> None:
    with db.session_scope(database_url) as session:
        stats = compute_stats(session, now=T0)

    assert stats.counts == dict.fromkeys(TaskStatus, 0)
    assert (stats.total, stats.finished, stats.total_polls) == (0, 0, 0)
    assert stats.polls_per_task is None
    assert stats.time_to_result_s is None
    assert stats.detection_window_s is None


def test_counts_and_nearest_rank_percentiles_on_a_known_history(database_url: str) -> None:
    _known_history(database_url)

    with db.session_scope(database_url) as session:
        stats = compute_stats(session, now=T0 + timedelta(hours=1))

    assert stats.counts == {
        **dict.fromkeys(TaskStatus, 0),
        TaskStatus.COMPLETED: 19,
        TaskStatus.FAILED: 1,
        TaskStatus.PROCESSING: 1,
        TaskStatus.CANCELLED: 1,
        TaskStatus.REGISTERED: 1,
    }
    assert (stats.total, stats.finished) == (23, 20)
    assert stats.total_polls == sum(range(1, 21)) + 4 + 3
    # Nearest rank over 20 values: p50 is the 10th, p95 the 19th, p99 the 20th.
    assert stats.polls_per_task == Distribution(count=20, mean=10.5, p50=10, p95=19, p99=20, max=20)
    time_to_result = stats.time_to_result_s
    assert time_to_result is not None
    assert time_to_result.count == 20
    assert (time_to_result.p50, time_to_result.p95, time_to_result.max) == pytest.approx(
        (110, 119, 120), abs=0.01
    )
    assert time_to_result.mean == pytest.approx(110.5, abs=0.01)
    bound = stats.detection_window_s
    assert bound is not None
    assert bound.count == 20
    assert (bound.p50, bound.p95, bound.p99, bound.max) == pytest.approx(
        (10, 19, 120, 120), abs=0.01
    )
    assert bound.mean == pytest.approx((sum(range(1, 20)) + 120) / 20, abs=0.01)


def test_since_and_provider_narrow_the_tasks(database_url: str) -> None:
    _register(database_url, "old", T0 - timedelta(days=2))
    _polled(
        database_url, "old", [(TaskStatus.COMPLETED, T0 - timedelta(days=2, seconds=-60))], polls=9
    )
    _register(database_url, "recent", T0)
    _polled(database_url, "recent", [(TaskStatus.FAILED, T0 + timedelta(seconds=30))], polls=2)

    with db.session_scope(database_url) as session:
        everything = compute_stats(session, now=T0)
        recent = compute_stats(session, now=T0, since=T0 - timedelta(hours=1))
        tensorslab = compute_stats(session, now=T0, provider="tensorslab")
        other = compute_stats(session, now=T0, provider="other")

    assert (everything.total, everything.total_polls) == (2, 11)
    assert recent.total == 1 and recent.counts[TaskStatus.FAILED] == 1
    assert recent.polls_per_task is not None and recent.polls_per_task.max == 2
    assert recent.detection_window_s is not None
    assert recent.detection_window_s.max == pytest.approx(30, abs=0.01)
    assert tensorslab == dataclasses.replace(everything, provider="tensorslab")
    assert other.total == 0 and other.polls_per_task is None


@pytest.fixture
def client(simulator: Simulator) -> Iterator[TensorsLabClient]:
    upstream = TensorsLabClient(base_url=simulator.base_url, api_key=SIM_API_KEY)
    yield upstream
    upstream.close()


def test_figures_match_what_real_polls_stored(
    database_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    simulator.add_task(
        TaskScript("ok", (Step(1, polls=2), Step(2, polls=2), Step(5, polls=1), Step(3)))
    )
    simulator.add_task(TaskScript("bad", (Step(2, polls=3), Step(4)), message="moderation"))
    with db.session_scope(database_url) as session:
        register.register(session, ["ok", "bad"], now=utc_now(), first_poll_delay_s=0)
    poll_until_terminal(database_url, client)

    with db.session_scope(database_url) as session:
        stats = compute_stats(session, now=utc_now())
        tasks = {t.task_id: t for t in queries.list_tasks(session)}
        rows = {row.task_id: row for row in session.scalars(select(TrackedTask))}
        windows, loose = [], []
        for task_id, task in tasks.items():
            moves = queries.history(session, task_id)
            assert task.completed_at == moves[-1].occurred_at
            last_seen = rows[task_id].last_seen_unfinished_at
            # The poll just before the one that saw the end saw the task still live: at or
            # after the transition into its last live status, before the end.
            assert last_seen is not None and moves[-2].occurred_at <= last_seen
            assert last_seen < task.completed_at
            windows.append((task.completed_at - last_seen).total_seconds())
            loose.append((task.completed_at - moves[-2].occurred_at).total_seconds())

    assert stats.counts[TaskStatus.COMPLETED] == 1 and stats.counts[TaskStatus.FAILED] == 1
    assert stats.polls_per_task is not None
    assert stats.polls_per_task.max == max(t.poll_count for t in tasks.values())
    assert stats.total_polls == sum(t.poll_count for t in tasks.values())
    assert stats.detection_window_s is not None
    assert stats.detection_window_s.max == pytest.approx(max(windows), abs=0.01)
    assert stats.detection_window_s.p50 == pytest.approx(min(windows), abs=0.01)
    assert all(w <= bound for w, bound in zip(windows, loose, strict=True))
    # "bad" stayed processing for 3 polls: its window starts at the third, not the first.
    assert any(w < bound for w, bound in zip(windows, loose, strict=True))


def test_watch_snapshot_time_in_status_and_unknown_ids(database_url: str) -> None:
    _register(database_url, "moved", T0)
    _polled(database_url, "moved", [(TaskStatus.PROCESSING, T0 + timedelta(seconds=40))], polls=2)
    _register(database_url, "fresh", T0 + timedelta(seconds=10))

    with db.session_scope(database_url) as session:
        snapshot = watch_snapshot(
            session, ["moved", "fresh", "moved"], now=T0 + timedelta(seconds=100)
        )
    assert [item.task.task_id for item in snapshot.tasks] == ["moved", "fresh"]
    moved, fresh = snapshot.tasks
    assert moved.status is TaskStatus.PROCESSING and moved.time_in_status_s == 60
    assert moved.in_status_since == T0 + timedelta(seconds=40)
    assert fresh.status is TaskStatus.REGISTERED and fresh.time_in_status_s == 90
    assert not snapshot.all_terminal

    with db.session_scope(database_url) as session:
        untrack.untrack(session, "moved", now=T0 + timedelta(seconds=200))
        untrack.untrack(session, "fresh", now=T0 + timedelta(seconds=200))
        done = watch_snapshot(session, ["moved", "fresh"], now=T0 + timedelta(seconds=230))
    assert done.all_terminal
    assert [item.time_in_status_s for item in done.tasks] == [30, 30]

    with db.session_scope(database_url) as session:
        with pytest.raises(UnknownTask, match="'nope'"):
            watch_snapshot(session, ["moved", "nope"], now=T0)
        with pytest.raises(InvalidTaskId, match="no task ID"):
            watch_snapshot(session, [], now=T0)


def test_the_time_to_result_histogram_counts_each_span_once(database_url: str) -> None:
    spans_s = {"fast": 5.0, "minute": 90.0, "slow": 7200.0, "live": None}
    with db.session_scope(database_url) as session:
        register.register_tasks(
            session, [register.NewTask(t, {}, None) for t in spans_s], first_poll_delay_s=600
        )
    with db.session_scope(database_url) as session:
        for task_id, span_s in spans_s.items():
            if span_s is None:
                continue
            row = session.scalars(select(TrackedTask).where(TrackedTask.task_id == task_id)).one()
            session.execute(
                update(TrackedTask)
                .where(TrackedTask.id == row.id)
                .values(
                    status=TaskStatus.COMPLETED.value,
                    completed_at=row.created_at + timedelta(seconds=span_s),
                )
            )
    with db.read_scope(database_url) as session:
        buckets = time_to_result_histogram(session, edges_s=(10.0, 60.0, 120.0))
    assert [(b.lower_s, b.upper_s, b.count) for b in buckets] == [
        (0.0, 10.0, 1),
        (10.0, 60.0, 0),
        (60.0, 120.0, 1),
        (120.0, None, 1),
    ]
