"""The `stats` use case: what the stored tasks and transitions say about tracking, in figures.

Counts by status, polls per task, time to result, and the one bound on detection delay the
stored data supports. Everything is aggregated by the database (counts, and nearest-rank
percentiles picked with window functions), so only a few rows come back however many tasks are
stored; the same statements run on SQLite and PostgreSQL.

What "detection delay" can mean here: upstream never says when a task finished, so tracker only
knows that it finished after the last poll that saw it unfinished (`last_seen_unfinished_at`)
and at or before the poll that saw it terminal. `detection_window_s` is that span: the detection
delay is at most this, and about half of it on average. Tasks polled before that column existed
(migration 0004) fall back to the latest stored sighting, the transition into their last live
status, a looser bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, FromClause, case, cast, extract, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from tracker.db.models import TrackedTask, Transition
from tracker.states import TERMINAL_STATUSES, TaskStatus

__all__ = [
    "PERCENTILES",
    "RESULT_TIME_EDGES_S",
    "Bucket",
    "Distribution",
    "Stats",
    "compute_stats",
    "time_to_result_histogram",
]

PERCENTILES = (50, 95, 99)
# The statuses upstream itself decides, always reached by a poll: the ones whose figures say
# how following a task to its result went. Untracked, expired and not-found tasks are left out.
RESULT_STATUSES = (TaskStatus.COMPLETED, TaskStatus.FAILED)
# Upper edges of the time-to-result histogram, in seconds: images take seconds, videos minutes.
RESULT_TIME_EDGES_S = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True, slots=True)
class Bucket:
    """Tasks whose figure is at least `lower_s` and below `upper_s` (None: no upper bound)."""

    lower_s: float
    upper_s: float | None
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Distribution:
    """One figure over a set of tasks. Percentiles are nearest-rank: observed values."""

    count: int  # tasks measured
    mean: float
    p50: float
    p95: float
    p99: float
    max: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    """Figures over the tasks registered since `since` (all when None) of `provider` (or all).

    The distributions are over the tasks that ended `completed` or `failed` (`finished`), and
    are None when there is none.
    """

    as_of: datetime
    since: datetime | None
    provider: str | None
    counts: Mapping[TaskStatus, int]  # every status, zeros included
    total: int  # tasks, every status
    finished: int  # of which ended completed or failed
    total_polls: int  # requests sent upstream for these tasks, errors included, live tasks too
    polls_per_task: Distribution | None
    """Polls a finished task took, the one that saw it finish and failed polls included."""
    time_to_result_s: Distribution | None
    """Seconds from registration to the poll that saw the task completed or failed."""
    detection_window_s: Distribution | None
    """Seconds from the last poll that saw the task unfinished (its registration when the first
    poll already saw it finished) to the poll that saw it completed or failed: the task
    finished inside this window, so the detection delay is at most this."""
    by_provider: Mapping[str, Stats] = field(default_factory=dict, compare=False)
    """Over all providers (`provider` None): the same figures per provider that has tasks in
    scope, by name (video and image tasks take very different times). Empty otherwise. Not
    compared: it is derived from the figures of the same tasks."""


def compute_stats(
    session: Session,
    *,
    now: datetime,
    provider: str | None = None,
    since: datetime | None = None,
) -> Stats:
    """Figures over the tasks of `provider` (all when None) registered at or after `since`."""
    scope: list[ColumnElement[bool]] = []
    if provider is not None:
        scope.append(TrackedTask.provider == provider)
    if since is not None:
        scope.append(TrackedTask.created_at >= since)

    counts = dict.fromkeys(TaskStatus, 0)
    total_polls = 0
    grouped = select(
        TrackedTask.status, func.count(), func.coalesce(func.sum(TrackedTask.poll_count), 0)
    ).where(*scope)
    for status, count, polls in session.execute(grouped.group_by(TrackedTask.status)):
        counts[TaskStatus(status)] = int(count)
        total_polls += int(polls)

    finished = [
        *scope,
        TrackedTask.status.in_([status.value for status in RESULT_STATUSES]),
        TrackedTask.completed_at.is_not(None),
    ]
    dialect = session.get_bind().dialect.name
    # Per task, the latest transition into a live status: the sighting unfinished to fall back
    # on for tasks polled before `last_seen_unfinished_at` was recorded.
    last_seen_live = (
        select(Transition.task_pk, func.max(Transition.occurred_at).label("at"))
        .where(
            Transition.to_status.not_in([status.value for status in TERMINAL_STATUSES]),
            Transition.task_pk.in_(select(TrackedTask.id).where(*finished)),
        )
        .group_by(Transition.task_pk)
        .subquery()
    )
    by_provider: dict[str, Stats] = {}
    if provider is None:
        names = select(TrackedTask.provider).where(*scope).distinct()
        by_provider = {
            name: compute_stats(session, now=now, provider=name, since=since)
            for name in sorted(session.scalars(names))
        }
    return Stats(
        by_provider=by_provider,
        as_of=now,
        since=since,
        provider=provider,
        counts=counts,
        total=sum(counts.values()),
        finished=sum(counts[status] for status in RESULT_STATUSES),
        total_polls=total_polls,
        polls_per_task=_distribution(session, TrackedTask.poll_count, finished),
        time_to_result_s=_distribution(
            session,
            _seconds_between(TrackedTask.completed_at, TrackedTask.created_at, dialect),
            finished,
        ),
        detection_window_s=_distribution(
            session,
            _seconds_between(
                TrackedTask.completed_at,
                func.coalesce(
                    TrackedTask.last_seen_unfinished_at, last_seen_live.c.at, TrackedTask.created_at
                ),
                dialect,
            ),
            finished,
            outerjoin=(last_seen_live, last_seen_live.c.task_pk == TrackedTask.id),
        ),
    )


def _seconds_between(later: Any, earlier: Any, dialect: str) -> ColumnElement[float]:
    if dialect == "sqlite":  # UTC datetimes stored as ISO text; julianday keeps milliseconds
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return cast(extract("epoch", later - earlier), Float)  # a double sorts faster than numeric


def _distribution(
    session: Session,
    value: ColumnElement[Any] | InstrumentedAttribute[Any],
    where: list[ColumnElement[bool]],
    *,
    outerjoin: tuple[FromClause, ColumnElement[bool]] | None = None,
) -> Distribution | None:
    """Mean, nearest-rank percentiles and max of `value` over the rows matching `where`.

    The database ranks the values (one window pass) and returns only the rows at the wanted
    ranks: rank ceil(p * n / 100) for each percentile p, and rank n for the max.
    """
    query = select(value.label("v")).select_from(TrackedTask)
    if outerjoin is not None:
        query = query.outerjoin(*outerjoin)
    values = query.where(*where).subquery()
    ranked = select(
        values.c.v,
        func.row_number().over(order_by=values.c.v).label("rank"),
        func.count().over().label("n"),
        func.avg(values.c.v).over().label("mean"),
    ).subquery()
    wanted = [ranked.c.rank == (ranked.c.n * p + 99) // 100 for p in PERCENTILES]
    rows = session.execute(
        select(ranked.c.v, ranked.c.rank, ranked.c.n, ranked.c.mean).where(
            or_(*wanted, ranked.c.rank == ranked.c.n)
        )
    ).all()
    if not rows:
        return None
    n = int(rows[0].n)
    by_rank = {int(row.rank): float(row.v) for row in rows}
    percentile = {p: by_rank[(n * p + 99) // 100] for p in PERCENTILES}
    return Distribution(
        count=n,
        mean=float(rows[0].mean),
        p50=percentile[50],
        p95=percentile[95],
        p99=percentile[99],
        max=by_rank[n],
    )


def time_to_result_histogram(
    session: Session,
    *,
    provider: str | None = None,
    since: datetime | None = None,
    edges_s: tuple[float, ...] = RESULT_TIME_EDGES_S,
) -> list[Bucket]:
    """How many tasks that ended completed or failed took each span of time from registration
    to result (the tasks of `compute_stats`' `time_to_result_s`), in one aggregate query."""
    finished: list[ColumnElement[bool]] = [
        TrackedTask.status.in_([status.value for status in RESULT_STATUSES]),
        TrackedTask.completed_at.is_not(None),
    ]
    if provider is not None:
        finished.append(TrackedTask.provider == provider)
    if since is not None:
        finished.append(TrackedTask.created_at >= since)
    dialect = session.get_bind().dialect.name
    seconds = _seconds_between(TrackedTask.completed_at, TrackedTask.created_at, dialect)
    below = [func.coalesce(func.sum(case((seconds < edge, 1), else_=0)), 0) for edge in edges_s]
    row = session.execute(select(*below, func.count()).where(*finished)).one()
    cumulative = [int(value) for value in row]
    counts = [cumulative[0]] + [cumulative[i] - cumulative[i - 1] for i in range(1, len(row))]
    lowers = (0.0, *edges_s)
    uppers: tuple[float | None, ...] = (*edges_s, None)
    return [Bucket(low, high, n) for low, high, n in zip(lowers, uppers, counts, strict=True)]
