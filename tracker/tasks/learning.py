"""What the adaptive schedule learned, kept in the database: refreshed from the completed tasks,
read by the workers (cached) and by `tracker stats --schedule`.

`refresh` runs periodically (beat sends `tracker.learn` every `REFRESH_EVERY_S`), not in the
transaction that writes a task's completion: the poll batch's write path stays as it was (no
bucket row locked by every batch that completes a task of a popular bucket, no extra statement
per completion), and the figures lag by a minute at most, which a schedule measured in minutes
does not feel. It reads the completed tasks in order of (updated_at, id) from where the last
refresh stopped (`schedule_learning`, locked first, so two refreshes at once learn each task
once), up to `lag_s` before now: a batch stamps a task's completion with its answer's time and
commits later, within its lease, so rows are read only once no batch can still commit them.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from tracker.db.models import ScheduleBucket, ScheduleLearning, TrackedTask
from tracker.db.upsert import insert_for
from tracker.states import TaskStatus
from tracker.tasks.adaptive import (
    EARLY_QUANTILE,
    Bucket,
    BucketFigures,
    bucket_of,
    completion_sample_s,
    kept_samples,
)
from tracker.tasks.schedule import PollPolicy

__all__ = [
    "REFRESH_EVERY_S",
    "LearnedBucket",
    "LearnedEarlyAges",
    "RefreshReport",
    "bucket_figures",
    "early_ages",
    "learned_schedule",
    "refresh",
]

REFRESH_EVERY_S = 30.0  # how often beat sends `tracker.learn`
READ_LIMIT = 5000  # completed tasks read by one refresh at most (the next one goes on)
_CURSOR = "completed"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EVERY_ID = 2**63 - 1  # a cursor at (t, this) has learned every row updated at t


@dataclass(frozen=True, slots=True)
class RefreshReport:
    """What one refresh did: tasks read, samples learned, buckets written."""

    read: int
    learned: int
    buckets: int


def refresh(
    session: Session,
    *,
    now: datetime,
    policies: Mapping[str, PollPolicy],
    lag_s: float,
    limit: int = READ_LIMIT,
) -> RefreshReport:
    """Learn from the tasks completed since the last refresh, up to `lag_s` before `now` (the
    database's clock); `policies` by provider give each task's maximum interval."""
    cursor = _locked_cursor(session)
    since = cursor.learned_until or _EPOCH
    horizon = now - timedelta(seconds=lag_s)
    rows = session.execute(
        select(
            TrackedTask.id,
            TrackedTask.provider,
            TrackedTask.details,
            TrackedTask.created_at,
            TrackedTask.last_seen_unfinished_at,
            TrackedTask.completed_at,
            TrackedTask.updated_at,
        )
        .where(
            TrackedTask.status == TaskStatus.COMPLETED.value,
            TrackedTask.updated_at <= horizon,
            or_(
                TrackedTask.updated_at > since,
                and_(
                    TrackedTask.updated_at == since,
                    TrackedTask.id > cursor.learned_through_id,
                ),
            ),
        )
        .order_by(TrackedTask.updated_at, TrackedTask.id)
        .limit(limit)
    ).all()
    learned: dict[Bucket, list[float]] = defaultdict(list)
    for row in rows:
        bucket = bucket_of(row.provider, row.details)
        policy = policies.get(row.provider)
        if bucket is None or policy is None or row.completed_at is None:
            continue
        sample = completion_sample_s(
            created_at=row.created_at,
            last_seen_unfinished_at=row.last_seen_unfinished_at,
            completed_at=row.completed_at,
            max_interval_s=policy.max_interval_s,
        )
        if sample is not None:
            learned[bucket].append(sample)
    for bucket in sorted(learned):
        _learn(session, bucket, learned[bucket], at=now)
    until, through_id = since, cursor.learned_through_id
    if len(rows) == limit:  # more to read: stop exactly after the last row read
        until, through_id = rows[-1].updated_at, rows[-1].id
    elif horizon > since:  # everything up to the horizon is read, ties at it included
        until, through_id = horizon, _EVERY_ID
    session.execute(
        update(ScheduleLearning)
        .where(ScheduleLearning.name == _CURSOR)
        .values(learned_until=until, learned_through_id=through_id, refreshed_at=now)
    )
    return RefreshReport(
        read=len(rows), learned=sum(map(len, learned.values())), buckets=len(learned)
    )


def _locked_cursor(session: Session) -> ScheduleLearning:
    """The refresh's cursor row, locked until the transaction ends (made on first use)."""
    session.execute(
        insert_for(session, ScheduleLearning)
        .values(name=_CURSOR, learned_until=None, learned_through_id=0)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return session.execute(
        select(ScheduleLearning).where(ScheduleLearning.name == _CURSOR).with_for_update()
    ).scalar_one()


def _learn(session: Session, bucket: Bucket, new_s: list[float], *, at: datetime) -> None:
    key = (
        ScheduleBucket.provider == bucket.provider,
        ScheduleBucket.model == bucket.model,
        ScheduleBucket.resolution == bucket.resolution,
        ScheduleBucket.duration_s == bucket.duration_s,
    )
    row = session.execute(
        select(ScheduleBucket.samples, ScheduleBucket.ages_s).where(*key)
    ).one_or_none()
    if row is None:
        session.execute(
            insert_for(session, ScheduleBucket).values(
                provider=bucket.provider,
                model=bucket.model,
                resolution=bucket.resolution,
                duration_s=bucket.duration_s,
                samples=len(new_s),
                ages_s=list(kept_samples((), new_s)),
                updated_at=at,
            )
        )
        return
    session.execute(
        update(ScheduleBucket)
        .where(*key)
        .values(
            samples=row.samples + len(new_s),
            ages_s=list(kept_samples(row.ages_s or (), new_s)),
            updated_at=at,
        )
    )


def bucket_figures(session: Session, *, provider: str | None = None) -> list[BucketFigures]:
    """Every learned bucket (of `provider`), in bucket order."""
    query = select(ScheduleBucket)
    if provider is not None:
        query = query.where(ScheduleBucket.provider == provider)
    return sorted(
        (
            BucketFigures(
                bucket=Bucket(row.provider, row.model, row.resolution, row.duration_s),
                samples=row.samples,
                ages_s=tuple(float(age) for age in row.ages_s or ()),
            )
            for row in session.scalars(query)
        ),
        key=lambda figures: figures.bucket,
    )


def early_ages(session: Session) -> dict[Bucket, float]:
    """The early age of every bucket that has one (enough samples)."""
    ages = {}
    for figures in bucket_figures(session):
        early_s = figures.early_age_s
        if early_s is not None:
            ages[figures.bucket] = early_s
    return ages


class LearnedEarlyAges:
    """A worker process's view of the learned early ages, read at most every `every_s`.

    Called with an open session (the poll batch's read, which fails as a whole if it does).
    """

    def __init__(
        self,
        *,
        every_s: float = REFRESH_EVERY_S,
        read: Callable[[Session], dict[Bucket, float]] = early_ages,
    ) -> None:
        self._every_s = every_s
        self._read = read
        self._ages: dict[Bucket, float] = {}
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self, session: Session) -> Mapping[Bucket, float]:
        with self._lock:
            if self._read_at is None or time.monotonic() - self._read_at >= self._every_s:
                self._ages = self._read(session)
                self._read_at = time.monotonic()
            return self._ages


@dataclass(frozen=True, slots=True, kw_only=True)
class LearnedBucket:
    """One learned bucket as `tracker stats --schedule` shows it. Ages are seconds after
    registration; quantiles are nearest-rank over the `kept` most recent samples."""

    provider: str
    model: str
    resolution: str
    duration_s: int
    samples: int  # completed tasks learned from, ever
    kept: int  # the most recent ones the figures are taken over
    p01_s: float | None
    p10_s: float | None
    p50_s: float | None
    p90_s: float | None
    early_age_s: float | None  # learned; None below MIN_SAMPLES samples
    # When the second poll comes, if the adaptive schedule moves it: the early age. None: the
    # default schedule (too few samples, the early age within the quiet period, or
    # TRACKER_POLL_SCHEDULE=fixed).
    second_poll_at_age_s: float | None


def learned_schedule(
    session: Session,
    *,
    policies: Mapping[str, PollPolicy],
    adaptive_on: bool,
    provider: str | None = None,
) -> list[LearnedBucket]:
    """Every learned bucket (of `provider`) with its figures and what the schedule does."""
    rows = []
    for figures in bucket_figures(session, provider=provider):
        bucket, early_s = figures.bucket, figures.early_age_s
        policy = policies.get(bucket.provider)
        used = (
            early_s
            if adaptive_on and early_s is not None and policy and early_s > policy.quiet_until_s
            else None
        )
        rows.append(
            LearnedBucket(
                provider=bucket.provider,
                model=bucket.model,
                resolution=bucket.resolution,
                duration_s=bucket.duration_s,
                samples=figures.samples,
                kept=len(figures.ages_s),
                p01_s=figures.quantile_s(EARLY_QUANTILE),
                p10_s=figures.quantile_s(0.10),
                p50_s=figures.quantile_s(0.50),
                p90_s=figures.quantile_s(0.90),
                early_age_s=early_s,
                second_poll_at_age_s=used,
            )
        )
    return rows
