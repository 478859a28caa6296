"""Overdue tasks and their likely cause, from the heartbeats.

A due task waits for the next tick to claim it; one still unclaimed `overdue_after_s` past its
`next_poll_at` (5 ticks, at least 5 s) is *overdue*. The likely cause, in the order checked:
its provider is paused; no beat has ticked (is `tracker beat` running?); no poll worker is alive
(is `tracker worker` running?); else beat and workers are alive but behind (a backlog).
`likely_cause` is the pure decision; the rest reads the database. `tracker status`, `tracker
list`, `/readyz` and `tracker doctor` all say it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracker.db.models import ScheduledPoll
from tracker.ops import heartbeats
from tracker.settings import Settings
from tracker.tasks import queries
from tracker.tasks.views import ProviderPauseView, TaskView

__all__ = [
    "Liveness",
    "Overdue",
    "find_overdue",
    "format_moment",
    "format_seconds",
    "likely_cause",
    "list_note",
    "overdue_after_s",
    "read_liveness",
    "readiness",
    "task_note",
]

OVERDUE_AFTER_TICKS = 5
MIN_OVERDUE_AFTER_S = 5.0


def overdue_after_s(settings: Settings) -> float:
    """How long past its due time a task may wait unclaimed before it is overdue."""
    return max(OVERDUE_AFTER_TICKS * settings.tick_interval_s, MIN_OVERDUE_AFTER_S)


@dataclass(frozen=True, slots=True, kw_only=True)
class Liveness:
    """What the heartbeats say about the processes that move due tasks, at `now`."""

    now: datetime
    beat_alive: bool
    beat_last_seen: datetime | None  # None: no beat has ever been recorded
    poll_workers_alive: int
    poll_worker_last_seen: datetime | None
    webhook_workers_alive: int
    webhook_worker_last_seen: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Overdue:
    """Overdue tasks right now: how many, how late the oldest is, and the likely cause."""

    count: int
    oldest_s: float
    cause: str


def format_seconds(seconds: float) -> str:
    """`32s`, `3m 05s`, `2h 07m`, `3d 04h`."""
    whole = int(seconds)
    if whole < 120:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600:02d}h"


def format_moment(moment: datetime, now: datetime) -> str:
    """`20:01:05 UTC` today, `2026-12-01 20:01:05 UTC` another day."""
    moment = moment.astimezone(UTC)
    same_day = moment.date() == now.astimezone(UTC).date()
    return moment.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S") + " UTC"


def likely_cause(
    liveness: Liveness, *, pause: ProviderPauseView | None, overdue: int, reason: bool = True
) -> str:
    """Why `overdue` due tasks are not being polled, and what to do, in one phrase.

    `reason=False` leaves out a pause's reason (upstream's words), for `/readyz`.
    """
    now = liveness.now
    if pause is not None:
        why = f" ({pause.reason})" if reason else ""
        until = format_moment(pause.paused_until, now)
        return f"polling of {pause.provider} is paused until {until}{why}"
    if not liveness.beat_alive:
        if liveness.beat_last_seen is None:
            return "no beat has ticked yet: is `tracker beat` running?"
        return (
            f"no beat has ticked since {format_moment(liveness.beat_last_seen, now)}: "
            "is `tracker beat` running?"
        )
    if liveness.poll_workers_alive == 0:
        if liveness.poll_worker_last_seen is None:
            return "beat ticks, but no poll worker has been seen: is `tracker worker` running?"
        return (
            "beat ticks, but no poll worker has been seen since "
            f"{format_moment(liveness.poll_worker_last_seen, now)}: is `tracker worker` running?"
        )
    workers = liveness.poll_workers_alive
    return (
        f"beat ticks and {workers} poll worker{'s' if workers != 1 else ''} "
        f"{'are' if workers != 1 else 'is'} alive but behind "
        f"({overdue} task{'s' if overdue != 1 else ''} overdue): "
        "a backlog; start more workers or raise `-c`"
    )


def read_liveness(session: Session, *, now: datetime, settings: Settings) -> Liveness:
    processes = heartbeats.list_processes(
        session, now=now, gone_after_s=heartbeats.gone_after_s(settings)
    )

    def of(kinds: frozenset[str]) -> tuple[int, datetime | None]:
        matching = [p for p in processes if p.kind in kinds]
        last = max((p.last_seen_at for p in matching), default=None)
        return sum(p.alive for p in matching), last

    beats, beat_last = of(frozenset({heartbeats.BEAT}))
    polls, polls_last = of(heartbeats.POLL_KINDS)
    hooks, hooks_last = of(heartbeats.WEBHOOK_KINDS)
    return Liveness(
        now=now,
        beat_alive=beats > 0,
        beat_last_seen=beat_last,
        poll_workers_alive=polls,
        poll_worker_last_seen=polls_last,
        webhook_workers_alive=hooks,
        webhook_worker_last_seen=hooks_last,
    )


def _pause_of(session: Session, provider: str, *, now: datetime) -> ProviderPauseView | None:
    return next(
        (p for p in queries.provider_pauses(session, now=now) if p.provider == provider), None
    )


def find_overdue(
    session: Session, *, now: datetime, settings: Settings, reason: bool = True
) -> Overdue | None:
    """Every overdue task, with the likely cause; None when none is overdue."""
    cutoff = now - timedelta(seconds=overdue_after_s(settings))
    rows = session.execute(
        select(ScheduledPoll.provider, func.count(), func.min(ScheduledPoll.due_at()))
        # `next_poll_at` first: the due index finds the candidates (the lease's end is later)
        .where(ScheduledPoll.next_poll_at < cutoff, ScheduledPoll.due_at() < cutoff)
        .group_by(ScheduledPoll.provider)
    ).all()
    if not rows:
        return None
    count = sum(n for _, n, _ in rows)
    oldest: datetime = min(first for _, _, first in rows if first is not None)
    # The provider with the most overdue tasks speaks for them all.
    provider = max(rows, key=lambda row: row[1])[0]
    cause = likely_cause(
        read_liveness(session, now=now, settings=settings),
        pause=_pause_of(session, provider, now=now),
        overdue=count,
        reason=reason,
    )
    return Overdue(count=count, oldest_s=(now - oldest).total_seconds(), cause=cause)


def task_note(session: Session, task: TaskView, *, now: datetime, settings: Settings) -> str | None:
    """`overdue by 32s: <cause>` for an overdue task; None for one that is not."""
    if task.next_poll_at is None:
        return None
    late_s = (now - task.next_poll_at).total_seconds()
    if late_s <= overdue_after_s(settings):
        return None
    overdue = find_overdue(session, now=now, settings=settings)
    count = overdue.count if overdue is not None else 1
    cause = likely_cause(
        read_liveness(session, now=now, settings=settings),
        pause=_pause_of(session, task.provider, now=now),
        overdue=count,
    )
    return f"overdue by {format_seconds(late_s)}: {cause}"


def list_note(session: Session, *, now: datetime, settings: Settings) -> str | None:
    """`3 tasks overdue (the oldest by 32s): <cause>`; None when none is."""
    overdue = find_overdue(session, now=now, settings=settings)
    return None if overdue is None else _summary(overdue)


def _summary(overdue: Overdue) -> str:
    tasks = "1 task" if overdue.count == 1 else f"{overdue.count} tasks"
    return f"{tasks} overdue (the oldest by {format_seconds(overdue.oldest_s)}): {overdue.cause}"


def readiness(
    session: Session, *, now: datetime, settings: Settings
) -> tuple[dict[str, str], bool]:
    """`/readyz`'s beat, workers and overdue checks, and whether they allow "ready".

    Only overdue tasks make tracker unready: beat or workers that are not running (yet) are
    reported, but an installation with nothing due is ready (a fresh one, or one between runs).
    """
    liveness = read_liveness(session, now=now, settings=settings)

    def seen(alive: bool, last: datetime | None) -> str:
        if alive:
            return "ok"
        return "none seen yet" if last is None else f"gone: last seen {format_moment(last, now)}"

    overdue = find_overdue(session, now=now, settings=settings, reason=False)
    checks = {
        "beat": seen(liveness.beat_alive, liveness.beat_last_seen),
        "workers": seen(liveness.poll_workers_alive > 0, liveness.poll_worker_last_seen),
        "overdue": "ok" if overdue is None else _summary(overdue),
    }
    return checks, overdue is None
