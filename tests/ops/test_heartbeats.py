"""Heartbeats in the database (SQLite and PostgreSQL): one row per process, throttled writes,
gone after the threshold, long-gone rows forgotten; and the overdue notes that read them."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.support import reschedule
from tracker import db
from tracker.db import migrate
from tracker.db.clock import utc_now
from tracker.db.models import ProcessHeartbeat
from tracker.ops import heartbeats, overdue
from tracker.settings import Settings
from tracker.tasks import queries, register


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _recorder(url: str, clock: FakeClock, *, kind: str = "polls", pid: int = 4242):
    return heartbeats.HeartbeatRecorder(
        kind=kind,
        every_s=5.0,
        session_scope=lambda: db.session_scope(url),
        queue="tracker",
        pid=pid,
        clock=clock,
    )


def _rows(url: str) -> list[ProcessHeartbeat]:
    with db.read_scope(url) as session:
        return list(session.scalars(select(ProcessHeartbeat).order_by(ProcessHeartbeat.id)))


def test_a_process_keeps_one_row_written_at_most_every_interval(database_url: str) -> None:
    clock = FakeClock()
    recorder = _recorder(database_url, clock)

    assert recorder.beat() is True  # the first call always writes
    [first] = _rows(database_url)
    assert recorder.beat() is False  # within the interval: nothing written
    assert recorder.beat(batch={"polled": 3, "ended": 1}) is False
    clock.now += 5.0
    assert recorder.beat() is True  # and it carries the batch that waited
    [row] = _rows(database_url)

    assert (row.kind, row.pid, row.queue) == ("polls", 4242, "tracker")
    assert row.started_at == first.started_at and row.last_seen_at >= first.last_seen_at
    assert row.last_batch == {"polled": 3, "ended": 1} and row.last_batch_at is not None


def test_processes_not_seen_for_a_while_are_gone(database_url: str) -> None:
    settings = Settings(heartbeat_interval_s=2.0, tick_interval_s=0.1)
    assert heartbeats.gone_after_s(settings) == 6.0  # 3 intervals > 10 ticks
    assert heartbeats.gone_after_s(Settings(heartbeat_interval_s=1, tick_interval_s=1)) == 10.0
    now = utc_now()
    with db.session_scope(database_url) as session:
        for kind, pid, ago_s in (("beat", 1, 1.0), ("polls", 2, 30.0), ("webhooks", 3, 2.0)):
            seen = now - timedelta(seconds=ago_s)
            heartbeats.record(session, kind=kind, host="h", pid=pid, started_at=seen, now=seen)
    with db.read_scope(database_url) as session:
        processes = heartbeats.list_processes(session, now=now, gone_after_s=6.0)
        liveness = overdue.read_liveness(session, now=now, settings=settings)

    assert [(p.name, p.alive) for p in processes] == [
        ("beat@h pid 1", True),
        ("webhooks@h pid 3", True),
        ("polls@h pid 2", False),
    ]
    assert liveness.beat_alive and liveness.webhook_workers_alive == 1
    assert liveness.poll_workers_alive == 0
    assert liveness.poll_worker_last_seen == now - timedelta(seconds=30)


def test_rows_not_seen_for_a_day_are_dropped_when_a_process_records(database_url: str) -> None:
    long_ago = utc_now() - timedelta(days=1, minutes=1)
    with db.session_scope(database_url) as session:
        heartbeats.record(
            session, kind="polls", host="old", pid=7, started_at=long_ago, now=long_ago
        )
        hour_ago = utc_now() - timedelta(hours=1)
        heartbeats.record(session, kind="beat", host="h", pid=8, started_at=hour_ago, now=hour_ago)

    assert _recorder(database_url, FakeClock(), kind="beat", pid=9).beat() is True

    assert sorted(row.pid for row in _rows(database_url)) == [8, 9]  # 7 was forgotten


def test_a_database_that_is_down_costs_a_heartbeat_and_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'later.db'}"  # no tables yet: every write fails
    clock = FakeClock()
    recorder = _recorder(url, clock)
    caplog.set_level(logging.INFO, logger="tracker.ops.heartbeats")

    for _ in range(3):
        assert recorder.beat(batch={"polled": 1}) is False
        clock.now += 5.0
    migrate.upgrade(url)
    assert recorder.beat() is True

    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            f"could not record the polls heartbeat: {url} has no tracker tables yet: run "
            "`tracker db upgrade` first",
        ),
        ("INFO", "recording the polls heartbeat works again"),
    ]
    [row] = _rows(url)
    assert row.last_batch == {"polled": 1}  # the batch that could not be written waited


def test_an_overdue_task_says_so_and_names_the_beat_that_stopped(database_url: str) -> None:
    settings = Settings(tick_interval_s=1.0, heartbeat_interval_s=1.0)
    now = utc_now()
    with db.session_scope(database_url) as session:
        register.register(session, ["late", "fine"], now=now, first_poll_delay_s=0)
        reschedule(session, now - timedelta(seconds=32), "late")
        reschedule(session, now - timedelta(seconds=2), "fine")  # due, not overdue
        stopped = now - timedelta(seconds=40)
        heartbeats.record(session, kind="beat", host="h", pid=1, started_at=stopped, now=stopped)
        heartbeats.record(session, kind="polls", host="h", pid=2, started_at=now, now=now)

    with db.read_scope(database_url) as session:
        late = overdue.task_note(
            session, queries.get_task(session, "late"), now=now, settings=settings
        )
        fine = overdue.task_note(
            session, queries.get_task(session, "fine"), now=now, settings=settings
        )
        listed = overdue.list_note(session, now=now, settings=settings)
        checks, ready = overdue.readiness(session, now=now, settings=settings)
        count = session.scalar(select(func.count()).select_from(ProcessHeartbeat))

    clock = f"{stopped:%H:%M:%S}"
    assert late == (
        f"overdue by 32s: no beat has ticked since {clock} UTC: is `tracker beat` running?"
    )
    assert fine is None
    assert listed is not None and listed.startswith("1 task overdue (the oldest by 32s): no beat")
    assert ready is False and count == 2
    assert checks["beat"] == f"gone: last seen {clock} UTC" and checks["workers"] == "ok"
    assert checks["overdue"].startswith("1 task overdue (the oldest by 32s): no beat has ticked")


def test_a_fresh_installation_with_nothing_due_is_ready(database_url: str) -> None:
    with db.read_scope(database_url) as session:
        checks, ready = overdue.readiness(session, now=utc_now(), settings=Settings())
    assert ready is True
    assert checks == {"beat": "none seen yet", "workers": "none seen yet", "overdue": "ok"}
