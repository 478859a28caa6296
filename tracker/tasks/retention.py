"""Retention: remove tasks that ended before a cutoff, with their history, in small batches.

What goes: tasks in a terminal status whose end (`completed_at`) is before the cutoff, with
their transitions, deliveries, attempts and webhook subscriptions (`erase.py`). What never goes: a
task still tracked, and a task with a delivery still pending (a retry to come). A delivery held
for a disabled endpoint is pending too, and would keep its task for ever; so a held delivery
created before the cutoff is first marked `failed` ("held longer than the retention period"),
which frees its task. Deliveries about no task (`webhook.test`, sent on request) go too when
they were created before the cutoff and are not pending, with their attempts; they count among
the deliveries and attempts removed. Nothing else about deliveries changes.

Each batch is one short transaction of at most `BATCH_SIZE` tasks: on PostgreSQL it locks its
tasks `FOR UPDATE SKIP LOCKED` and their deliveries, then checks again that none is pending, so
a `redeliver` at the same moment either waits for the batch (and then finds nothing) or keeps
its task. Two prunes at once take disjoint batches (PostgreSQL) or take turns (SQLite's write
lock): neither removes anything the other should have kept.

Beat runs `prune_if_due` every hour; it prunes only when the last run began more than
`DAILY` ago, claimed by one guarded UPDATE of the `retention_runs` row, so two beats, or a beat
restarted, prune once a day. Each run's count goes to that row (`removed_total` is
`tracker_pruned_tasks_total` in /metrics).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.orm import Session

from tracker.db.models import (
    DeliveryAttempt,
    RetentionRun,
    ScheduledPoll,
    TrackedTask,
    Transition,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSubscription,
)
from tracker.db.upsert import insert_for
from tracker.errors import InvalidInput
from tracker.states import TERMINAL_STATUSES, DeliveryStatus
from tracker.tasks.erase import Erased, erase_tasks

__all__ = [
    "BATCH_SIZE",
    "DAILY",
    "PruneReport",
    "cutoff_from",
    "prune",
    "prune_if_due",
    "pruned_total",
]

log = logging.getLogger(__name__)

JOB = "prune"
BATCH_SIZE = 200  # tasks per transaction: short locks, whatever the table's size
DAILY = timedelta(hours=23)  # a little under a day, so an hourly check never slips a day
HELD_TOO_LONG = (
    "held longer than the retention period (TRACKER_RETENTION_DAYS) while its endpoint was "
    "disabled; never sent"
)
_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

SessionFactory = Callable[[], Any]  # a context manager yielding a Session in a transaction


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneReport:
    """What a prune removed (or, with `dry_run`, would remove)."""

    cutoff: datetime
    dry_run: bool
    erased: Erased
    held_failed: int  # held deliveries marked failed first (their tasks could then go)
    kept_pending: int  # tasks that ended before the cutoff, kept for a pending delivery


def cutoff_from(older_than: str, *, now: datetime) -> datetime:
    """The cutoff for `--older-than`: a duration ago (`90d`, `12h`, `2w`, `30m`) or an ISO
    8601 time (UTC when it has no offset). One clear `InvalidInput` for anything else, and for
    a cutoff in the future."""
    text = older_than.strip()
    match = _AGE.match(text)
    try:
        if match:
            cutoff = now - timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])
        else:
            moment = datetime.fromisoformat(text)
            cutoff = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInput(
            f"--older-than {older_than!r} is neither a duration (90d, 12h, 2w) nor an ISO time "
            "(2026-09-01T00:00Z)"
        ) from None
    if cutoff > now:
        raise InvalidInput(
            f"--older-than {older_than!r} is a cutoff in the future "
            f"({cutoff:%Y-%m-%d %H:%M:%S} UTC): nothing has ended after now"
        )
    return cutoff


def _ended_before(cutoff: datetime) -> Any:
    return and_(
        TrackedTask.status.in_([status.value for status in TERMINAL_STATUSES]),
        ~exists().where(ScheduledPoll.task_pk == TrackedTask.id),
        TrackedTask.completed_at < cutoff,
    )


def _pending(task_pk: Any) -> Any:
    return exists().where(
        WebhookDelivery.task_pk == task_pk,
        WebhookDelivery.status == DeliveryStatus.PENDING.value,
    )


def _held_before(cutoff: datetime) -> Any:
    """Held: pending with no next attempt and no lease, for an endpoint that is disabled."""
    disabled = select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(False))
    return and_(
        WebhookDelivery.status == DeliveryStatus.PENDING.value,
        WebhookDelivery.next_attempt_at.is_(None),
        WebhookDelivery.lease_token.is_(None),
        WebhookDelivery.endpoint_id.in_(disabled),
        WebhookDelivery.created_at < cutoff,
    )


def _taskless_before(cutoff: datetime) -> Any:
    """A delivery about no task (`webhook.test`) created before the cutoff, not pending."""
    return and_(
        WebhookDelivery.task_pk.is_(None),
        WebhookDelivery.status != DeliveryStatus.PENDING.value,
        WebhookDelivery.created_at < cutoff,
    )


def _prune_taskless(session: Session, cutoff: datetime, *, batch_size: int) -> Erased | None:
    """One batch of old `webhook.test` deliveries, with their attempts; None when none is left."""
    ids = list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(_taskless_before(cutoff))
            .order_by(WebhookDelivery.id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
    )
    if not ids:
        return None
    attempts = session.execute(
        delete(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id.in_(ids))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    deliveries = session.execute(
        delete(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    return Erased(deliveries=int(deliveries), attempts=int(attempts))


def prune(
    session_scope: SessionFactory,
    *,
    cutoff: datetime,
    now: datetime,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
) -> PruneReport:
    """Remove what ended before `cutoff` (see the module's docstring), batch by batch; with
    `dry_run`, count it and change nothing. Records the count unless `dry_run`."""
    if dry_run:
        with session_scope() as session:
            return _dry_run(session, cutoff)
    held_failed = 0
    while True:  # held deliveries first, in batches too
        with session_scope() as session:
            ids = list(
                session.scalars(
                    select(WebhookDelivery.id)
                    .where(_held_before(cutoff))
                    .order_by(WebhookDelivery.id)
                    .limit(batch_size)
                    .with_for_update(skip_locked=True)
                )
            )
            if not ids:
                break
            held_failed += session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids), _held_before(cutoff))
                .values(
                    status=DeliveryStatus.FAILED.value, last_error=HELD_TOO_LONG, updated_at=now
                )
                .execution_options(synchronize_session=False)
            ).rowcount
    erased, after = Erased(), 0
    while True:
        with session_scope() as session:
            batch = _prune_batch(session, cutoff, after=after, batch_size=batch_size)
        if batch is None:
            break
        after, removed = batch
        erased += removed
    while True:
        with session_scope() as session:
            taskless = _prune_taskless(session, cutoff, batch_size=batch_size)
        if taskless is None:
            break
        erased += taskless
    with session_scope() as session:
        kept = _count_kept(session, cutoff)
        _record(session, erased.tasks, at=now)
    return PruneReport(
        cutoff=cutoff, dry_run=False, erased=erased, held_failed=held_failed, kept_pending=kept
    )


def _prune_batch(
    session: Session, cutoff: datetime, *, after: int, batch_size: int
) -> tuple[int, Erased] | None:
    """One batch: the next tasks (by id, after `after`) that ended before `cutoff`, locked,
    checked again for pending deliveries with those locked, and erased. None when no task is
    left to look at."""
    chosen = list(
        session.scalars(
            select(TrackedTask.id)
            .where(_ended_before(cutoff), TrackedTask.id > after, ~_pending(TrackedTask.id))
            .order_by(TrackedTask.id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
    )
    if not chosen:
        return None
    # Lock their deliveries, so none becomes pending (redeliver) between the check and the
    # delete; then check again with them locked.
    locked = session.execute(
        select(WebhookDelivery.task_pk, WebhookDelivery.status)
        .where(WebhookDelivery.task_pk.in_(chosen))
        .order_by(WebhookDelivery.id)
        .with_for_update()
    ).all()
    pending = {row.task_pk for row in locked if row.status == DeliveryStatus.PENDING.value}
    return chosen[-1], erase_tasks(session, [pk for pk in chosen if pk not in pending])


def _count_kept(session: Session, cutoff: datetime) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(TrackedTask)
            .where(_ended_before(cutoff), _pending(TrackedTask.id))
        )
        or 0
    )


def _dry_run(session: Session, cutoff: datetime) -> PruneReport:
    """What `prune` would do: held deliveries created before the cutoff count as failed."""
    held = int(
        session.scalar(
            select(func.count()).select_from(WebhookDelivery).where(_held_before(cutoff))
        )
        or 0
    )
    # Pending after the held ones are failed: pending and not held-before-cutoff.
    still_pending = exists().where(
        WebhookDelivery.task_pk == TrackedTask.id,
        WebhookDelivery.status == DeliveryStatus.PENDING.value,
        ~_held_before(cutoff),
    )
    tasks = select(TrackedTask.id).where(_ended_before(cutoff), ~still_pending)
    deliveries = select(WebhookDelivery.id).where(WebhookDelivery.task_pk.in_(tasks))

    def count(model: Any, *where: Any) -> int:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    taskless = select(WebhookDelivery.id).where(_taskless_before(cutoff))
    erased = Erased(
        tasks=count(TrackedTask, TrackedTask.id.in_(tasks)),
        transitions=count(Transition, Transition.task_pk.in_(tasks)),
        deliveries=count(WebhookDelivery, WebhookDelivery.id.in_(deliveries))
        + count(WebhookDelivery, WebhookDelivery.id.in_(taskless)),
        attempts=count(DeliveryAttempt, DeliveryAttempt.delivery_id.in_(deliveries))
        + count(DeliveryAttempt, DeliveryAttempt.delivery_id.in_(taskless)),
        subscriptions=count(WebhookSubscription, WebhookSubscription.task_pk.in_(tasks)),
    )
    kept = count(TrackedTask, _ended_before(cutoff), still_pending)
    return PruneReport(
        cutoff=cutoff, dry_run=True, erased=erased, held_failed=held, kept_pending=kept
    )


def _ensure_row(session: Session) -> None:
    session.execute(
        insert_for(session, RetentionRun)
        .values(job=JOB, last_removed=0, removed_total=0)
        .on_conflict_do_nothing(index_elements=["job"])
    )


def _record(session: Session, removed: int, *, at: datetime) -> None:
    _ensure_row(session)
    session.execute(
        update(RetentionRun)
        .where(RetentionRun.job == JOB)
        .values(
            finished_at=at,
            last_removed=removed,
            removed_total=RetentionRun.removed_total + removed,
        )
    )


def pruned_total(session: Session) -> int:
    """How many tasks retention and `tracker prune` have removed in all."""
    return int(
        session.scalar(select(RetentionRun.removed_total).where(RetentionRun.job == JOB)) or 0
    )


def _claim_daily_run(session: Session, *, now: datetime) -> bool:
    _ensure_row(session)
    claimed = session.execute(
        update(RetentionRun)
        .where(
            RetentionRun.job == JOB,
            (RetentionRun.started_at.is_(None)) | (RetentionRun.started_at <= now - DAILY),
        )
        .values(started_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


def prune_if_due(
    session_scope: SessionFactory,
    *,
    now: Callable[[Session], datetime],
    retention_days: int,
    batch_size: int = BATCH_SIZE,
) -> PruneReport | None:
    """Beat's daily prune: None when retention is off (0 days) or today's run was claimed
    already (by this beat, another one, or before a restart)."""
    if retention_days <= 0:
        return None
    with session_scope() as session:
        moment = now(session)
        if not _claim_daily_run(session, now=moment):
            return None
    report = prune(
        session_scope,
        cutoff=moment - timedelta(days=retention_days),
        now=moment,
        batch_size=batch_size,
    )
    erased = report.erased
    log.info(
        "retention: pruned %d tasks that ended before %s UTC (%d transitions, %d deliveries, "
        "%d attempts, %d webhook subscriptions; %d held deliveries failed first; %d tasks kept "
        "for a pending delivery)",
        erased.tasks,
        f"{report.cutoff:%Y-%m-%d %H:%M:%S}",
        erased.transitions,
        erased.deliveries,
        erased.attempts,
        erased.subscriptions,
        report.held_failed,
        report.kept_pending,
    )
    return report
