"""Provider-wide pauses: after no credits (9000), a refused key (401/403), an upstream that
cannot be reached for minutes, or a 429 with Retry-After, no task of that provider is claimed
until the pause's time is up.

Then, for every cause but a 429's (`PauseCause.needs_probe`), one probe poll at a time is
claimed, and the pause stands until an answer that is not itself a reason to pause lifts it; a
probe that meets the same trouble extends the pause (the same pause: no new WARNING). `resume`
lifts a pause by hand. A pause's row is read and written under its row lock, so two batches that
hit the same trouble at once record one pause, and only one of them learns that it started it.
A shorter pause never cuts a longer one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, delete, exists, or_, select, update
from sqlalchemy.orm import Session

from tracker.db.models import ProviderFailureRow, ProviderPauseRow, ScheduledPoll, TrackedTask
from tracker.db.upsert import insert_for
from tracker.errors import ProviderNotPaused
from tracker.tasks.decide import PauseCause, ProviderPause
from tracker.tasks.ids import DEFAULT_PROVIDER, validate_provider
from tracker.tasks.views import ProviderPauseView, TaskView

__all__ = [
    "Resumed",
    "active_pauses",
    "annotate",
    "blocked_condition",
    "lift_expired_pause",
    "longest",
    "note_reached",
    "note_unreachable",
    "pause_provider",
    "probing_providers",
    "resume",
    "resume_command",
    "start_probe",
]

PROBING_CAUSES = tuple(cause.value for cause in PauseCause if cause.needs_probe)


@dataclass(frozen=True, slots=True)
class Resumed:
    provider: str
    cause: str
    tasks_due: int  # tasks the pause had held back (troubled or fallen due), now due


def resume_command(provider: str) -> str:
    """The command that lifts `provider`'s pause, as advice in messages."""
    return "`tracker resume`" if provider == DEFAULT_PROVIDER else f"`tracker resume {provider}`"


def longest(pauses: Iterable[ProviderPause]) -> ProviderPause | None:
    """The pause that ends last among `pauses` (a batch's answers), or None."""
    return max(pauses, key=lambda pause: pause.until, default=None)


def pause_provider(session: Session, provider: str, pause: ProviderPause, *, at: datetime) -> bool:
    """Pause polling of `provider` until `pause.until`, unless a longer pause already holds.

    Returns True when this started a pause (there was none, or this one replaced another
    cause): the caller logs it once. Extending a pause of the same cause, a probe's answer
    included, is the same pause.
    """
    row = _locked(session, provider)
    if row is None:
        session.execute(
            insert_for(session, ProviderPauseRow)
            .values(
                provider=provider,
                paused_until=pause.until,
                reason=pause.reason,
                cause=pause.cause.value,
                started_at=at,
                updated_at=at,
            )
            .on_conflict_do_nothing(index_elements=["provider"])
        )
        row = _locked(session, provider)
        assert row is not None
        if row.started_at == at and row.cause == pause.cause.value:
            return True
    if row.cause == pause.cause.value:
        values: dict[str, object] = {"probe_until": None, "reason": pause.reason, "updated_at": at}
        if pause.until > row.paused_until:
            values["paused_until"] = pause.until
        _update(session, provider, values)
        return False
    if pause.until <= row.paused_until:
        return False  # a longer pause of another cause holds
    _update(
        session,
        provider,
        {
            "paused_until": pause.until,
            "reason": pause.reason,
            "cause": pause.cause.value,
            "started_at": at,
            "probe_until": None,
            "updated_at": at,
        },
    )
    return True


def _locked(session: Session, provider: str) -> ProviderPauseRow | None:
    return session.scalar(
        select(ProviderPauseRow)
        .where(ProviderPauseRow.provider == provider)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _update(session: Session, provider: str, values: dict[str, object]) -> None:
    session.execute(
        update(ProviderPauseRow)
        .where(ProviderPauseRow.provider == provider)
        .values(values)
        .execution_options(synchronize_session=False)
    )


def lift_expired_pause(session: Session, provider: str, *, at: datetime) -> str | None:
    """An answer that is no reason to pause came at `at`: lift a pause whose time was up by
    then (a probe's, or a 429's that simply ended). Returns the lifted pause's cause."""
    row = session.scalar(
        select(ProviderPauseRow.cause).where(
            ProviderPauseRow.provider == provider, ProviderPauseRow.paused_until <= at
        )
    )
    if row is None:
        return None
    deleted = session.execute(
        delete(ProviderPauseRow).where(
            ProviderPauseRow.provider == provider, ProviderPauseRow.paused_until <= at
        )
    )
    return row if deleted.rowcount else None  # type: ignore[attr-defined]


def note_reached(session: Session, provider: str) -> None:
    """Something answered: the provider's run of failed connections, if any, is over."""
    session.execute(delete(ProviderFailureRow).where(ProviderFailureRow.provider == provider))


def note_unreachable(
    session: Session,
    provider: str,
    *,
    first_at: datetime,
    last_at: datetime,
    error: str,
    after_s: float,
    pause_s: float,
) -> ProviderPause | None:
    """Every request of a batch failed to connect, from `first_at` to `last_at`. Returns the
    `unreachable` pause to record when the run of failures has lasted `after_s`."""
    session.execute(
        insert_for(session, ProviderFailureRow)
        .values(provider=provider, unreachable_since=first_at, last_error=error, updated_at=last_at)
        .on_conflict_do_nothing(index_elements=["provider"])
    )
    row = session.scalar(
        select(ProviderFailureRow)
        .where(ProviderFailureRow.provider == provider)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None
    since = min(row.unreachable_since, first_at)
    row.unreachable_since, row.last_error, row.updated_at = since, error, last_at
    failing_s = (last_at - since).total_seconds()
    if failing_s < after_s:
        return None
    reason = f"unreachable for {failing_s:.0f} s: {error}"
    return ProviderPause(last_at + timedelta(seconds=pause_s), reason, PauseCause.UNREACHABLE)


def probing_providers(session: Session, *, now: datetime) -> list[str]:
    """Providers whose pause's time is up but not yet lifted, with no probe in flight."""
    return list(
        session.scalars(
            select(ProviderPauseRow.provider).where(
                ProviderPauseRow.paused_until <= now,
                ProviderPauseRow.cause.in_(PROBING_CAUSES),
                or_(ProviderPauseRow.probe_until.is_(None), ProviderPauseRow.probe_until <= now),
            )
        )
    )


def start_probe(session: Session, provider: str, *, now: datetime, until: datetime) -> bool:
    """Mark a probe of `provider` in flight until `until`; False if another claim did first."""
    result = session.execute(
        update(ProviderPauseRow)
        .where(
            ProviderPauseRow.provider == provider,
            ProviderPauseRow.paused_until <= now,
            or_(ProviderPauseRow.probe_until.is_(None), ProviderPauseRow.probe_until <= now),
        )
        .values(probe_until=until)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def blocked_condition(now: datetime) -> Select[str]:
    """Providers none of whose tasks may be claimed now (paused, or a probe in flight)."""
    return select(ProviderPauseRow.provider).where(
        or_(ProviderPauseRow.paused_until > now, ProviderPauseRow.probe_until > now)
    )


def active_pauses(session: Session, *, now: datetime) -> list[ProviderPauseView]:
    """Providers whose polling is paused right now, and why: those still waiting out the
    pause, and those whose time is up but whose probe has not lifted it yet."""
    rows = session.scalars(
        select(ProviderPauseRow)
        .where(or_(ProviderPauseRow.paused_until > now, ProviderPauseRow.cause.in_(PROBING_CAUSES)))
        .order_by(ProviderPauseRow.provider)
    )
    return [ProviderPauseView.of(row) for row in rows]


def annotate(session: Session, tasks: list[TaskView], *, now: datetime) -> list[TaskView]:
    """`tasks` with `paused` set on each live one whose provider is paused (one query)."""
    if not any(not task.status.is_terminal for task in tasks):
        return tasks
    by_provider = {pause.provider: pause for pause in active_pauses(session, now=now)}
    return [
        dataclasses.replace(task, paused=by_provider[task.provider])
        if task.provider in by_provider and not task.status.is_terminal
        else task
        for task in tasks
    ]


def resume(session: Session, provider: str, *, now: datetime) -> Resumed:
    """Lift `provider`'s pause now and make the tasks it held back due now.

    Held back: the tasks whose polls met trouble (`consecutive_errors` > 0) and wait for a
    later poll, and the tasks that fell due while the pause held (due now rather than overdue
    since then, which would blame a backlog that is not there). Raises
    `ProviderNotPaused` when nothing is paused.
    """
    validate_provider(provider)
    pause = next((p for p in active_pauses(session, now=now) if p.provider == provider), None)
    if pause is None:
        raise ProviderNotPaused(f"polling of {provider} is not paused; nothing to resume")
    session.execute(delete(ProviderPauseRow).where(ProviderPauseRow.provider == provider))
    note_reached(session, provider)
    troubled = exists().where(
        TrackedTask.id == ScheduledPoll.task_pk, TrackedTask.consecutive_errors > 0
    )
    due = session.execute(
        update(ScheduledPoll)
        .where(
            ScheduledPoll.provider == provider,
            ScheduledPoll.lease_token.is_(None),
            # troubled tasks waiting for a later poll, and tasks that fell due during the
            # pause: due now, not overdue since the pause's start
            or_(and_(ScheduledPoll.next_poll_at > now, troubled), ScheduledPoll.next_poll_at < now),
        )
        .values(next_poll_at=now)
        .execution_options(synchronize_session=False)
    )
    return Resumed(provider, pause.cause, due.rowcount)  # type: ignore[attr-defined]
