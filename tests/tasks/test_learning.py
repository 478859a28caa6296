"""What the adaptive schedule learns, stored and refreshed on SQLite and PostgreSQL: each
completed task learned once, only once no batch can still commit it, and read back for workers
and `tracker stats --schedule`."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.tasks.history import completed_task
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import ScheduleBucket
from tracker.settings import Settings
from tracker.states import TaskStatus
from tracker.tasks import learning
from tracker.tasks.adaptive import Bucket
from tracker.tasks.schedule import policies_by_provider

POLICIES = policies_by_provider(Settings())
HD = {"source": "seedancev2", "resolution": "1080p", "duration": 10}
HD_BUCKET = Bucket("tensorslab", "seedancev2", "1080p", 10)
SD = {"source": "seedancev2", "resolution": "720p", "duration": 5}


def _ended(
    session: Session,
    task_id: str,
    *,
    at: datetime,
    details: dict[str, Any] | None = None,
    unfinished_s: float | None = 290.0,
    completed_s: float = 300.0,
    status: TaskStatus = TaskStatus.COMPLETED,
) -> None:
    completed_task(
        session,
        task_id,
        at=at,
        details=HD if details is None else details,
        unfinished_s=unfinished_s,
        completed_s=completed_s,
        status=status.value,
    )


def _refresh(
    url: str, *, now: datetime, lag_s: float = 0.0, limit: int = 5000
) -> learning.RefreshReport:
    with db.session_scope(url) as session:
        return learning.refresh(session, now=now, policies=POLICIES, lag_s=lag_s, limit=limit)


def _figures(url: str) -> dict[Bucket, tuple[int, tuple[float, ...]]]:
    with db.read_scope(url) as session:
        return {f.bucket: (f.samples, f.ages_s) for f in learning.bucket_figures(session)}


def test_completed_tasks_are_learned_once_per_bucket(database_url: str) -> None:
    start = utc_now() - timedelta(hours=1)
    with db.session_scope(database_url) as session:
        for n in range(3):
            _ended(session, f"hd-{n}", at=start + timedelta(seconds=n), completed_s=300 + n)
        _ended(session, "sd", at=start, details=SD, unfinished_s=140, completed_s=150)

    report = _refresh(database_url, now=utc_now())

    assert (report.read, report.learned, report.buckets) == (4, 4, 2)
    figures = _figures(database_url)
    assert figures[HD_BUCKET] == (3, (295.0, 295.5, 296.0))  # each window's middle
    assert figures[Bucket("tensorslab", "seedancev2", "720p", 5)] == (1, (145.0,))
    assert _refresh(database_url, now=utc_now()).read == 0, "nothing is learned twice"
    assert _figures(database_url) == figures


def test_what_tells_nothing_is_not_learned(database_url: str) -> None:
    start = utc_now() - timedelta(hours=1)
    with db.session_scope(database_url) as session:
        _ended(session, "failed", at=start, status=TaskStatus.FAILED)
        _ended(session, "cancelled", at=start, status=TaskStatus.CANCELLED)
        _ended(session, "done-at-first-poll", at=start, unfinished_s=None, completed_s=5)
        _ended(session, "nonsense", at=start, details={**HD, "duration": -10})
        _ended(session, "unknown-resolution", at=start, details={**HD, "resolution": "huge"})
        _ended(session, "no-details", at=start, details={})

    report = _refresh(database_url, now=utc_now())

    assert report.read == 4 and report.learned == 0  # the failed and cancelled are not read
    assert _figures(database_url) == {}


def test_a_task_ended_within_the_lag_is_learned_by_a_later_refresh(database_url: str) -> None:
    now = utc_now()
    with db.session_scope(database_url) as session:
        _ended(session, "just-now", at=now - timedelta(seconds=310))  # ended 10 s ago

    assert _refresh(database_url, now=now, lag_s=150).learned == 0
    assert _refresh(database_url, now=now + timedelta(seconds=200), lag_s=150).learned == 1
    assert _refresh(database_url, now=now + timedelta(seconds=400), lag_s=150).learned == 0


def test_a_long_history_is_read_in_parts_without_missing_or_repeating_a_task(
    database_url: str,
) -> None:
    start = utc_now() - timedelta(hours=2)
    with db.session_scope(database_url) as session:
        for n in range(7):  # pairs ending at the same moment: the cursor breaks ties by id
            _ended(session, f"t{n}", at=start + timedelta(seconds=n // 2), completed_s=300)

    reads = [_refresh(database_url, now=utc_now(), limit=3).read for _ in range(4)]

    assert reads == [3, 3, 1, 0]
    assert _figures(database_url)[HD_BUCKET][0] == 7


def test_two_refreshes_at_once_learn_each_task_once(database_url: str) -> None:
    start = utc_now() - timedelta(hours=1)
    with db.session_scope(database_url) as session:
        for n in range(40):
            _ended(session, f"t{n}", at=start + timedelta(seconds=n))
    errors: list[BaseException] = []

    def refresh() -> None:
        try:
            _refresh(database_url, now=utc_now(), limit=7)
        except BaseException as error:
            errors.append(error)

    for _ in range(4):
        threads = [threading.Thread(target=refresh) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    while _refresh(database_url, now=utc_now(), limit=7).read:
        pass

    assert not errors
    assert _figures(database_url)[HD_BUCKET][0] == 40


def test_early_ages_need_enough_samples_and_workers_read_them_cached(database_url: str) -> None:
    start = utc_now() - timedelta(hours=1)
    with db.session_scope(database_url) as session:
        for n in range(19):
            _ended(
                session,
                f"t{n}",
                at=start + timedelta(seconds=n),
                unfinished_s=290 + n,
                completed_s=300 + n,
            )
    _refresh(database_url, now=utc_now())
    cached = learning.LearnedEarlyAges(every_s=3600)
    with db.read_scope(database_url) as session:
        assert learning.early_ages(session) == {}
        assert cached(session) == {}

    with db.session_scope(database_url) as session:
        # It ends after the first refresh's horizon, as tasks do.
        _ended(
            session,
            "twentieth",
            at=utc_now() - timedelta(seconds=289),
            unfinished_s=280,
            completed_s=290,
        )
    _refresh(database_url, now=utc_now() + timedelta(seconds=2))

    with db.read_scope(database_url) as session:
        assert learning.early_ages(session) == {HD_BUCKET: 285.0 * 0.9}
        assert cached(session) == {}, "read again only after every_s"
        assert learning.LearnedEarlyAges(every_s=0)(session) == {HD_BUCKET: 285.0 * 0.9}


def test_a_bucket_keeps_its_most_recent_samples(database_url: str) -> None:
    with db.session_scope(database_url) as session:
        session.add(
            ScheduleBucket(
                provider="tensorslab",
                model="seedancev2",
                resolution="1080p",
                duration_s=10,
                samples=1000,
                ages_s=[100.0] * 256,
                updated_at=utc_now(),
            )
        )
        _ended(session, "new", at=utc_now() - timedelta(hours=1))
    _refresh(database_url, now=utc_now())

    with db.read_scope(database_url) as session:
        row = session.scalars(select(ScheduleBucket)).one()
    assert row.samples == 1001 and len(row.ages_s) == 256 and row.ages_s[-1] == 295.0
