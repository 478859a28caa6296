"""Claim due tasks, poll a batch of them, and write what each poll decided.

A claim leases due rows (`leasing.py`) and splits them into batches. A batch only writes rows
that still carry its token and the status it read, so a second tick, a second beat, an untrack
or a slow worker whose lease ran out can never record a transition twice. A worker that dies
leaves rows that fall due again when the lease ends: the database, not the broker, knows what
is due. A transition and its webhook deliveries (the outbox) are written in one transaction.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from tracker.leasing import lease_due_rows, utc_now
from tracker.models import ProviderPauseRow, TrackedTask, Transition
from tracker.outcomes import PollOutcome, ProviderPause, TaskSnapshot, decide
from tracker.schedule import PollPolicy
from tracker.states import TaskStatus
from tracker.upstream.base import PollResult, Provider, TaskMissing, TaskReport
from tracker.webhooks.outbox import enqueue_deliveries

__all__ = ["BatchSummary", "Claim", "claim_due_tasks", "poll_batch", "utc_now"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claim:
    """Rows leased to one batch until `lease_expires_at`; only `lease_token` may write them."""

    lease_token: str
    task_pks: tuple[int, ...]
    lease_expires_at: datetime

    def to_message(self) -> dict[str, Any]:
        return {
            "lease_token": self.lease_token,
            "task_pks": list(self.task_pks),
            "lease_expires_at": self.lease_expires_at.isoformat(),
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Claim:
        return cls(
            lease_token=str(message["lease_token"]),
            task_pks=tuple(int(pk) for pk in message["task_pks"]),
            lease_expires_at=datetime.fromisoformat(message["lease_expires_at"]),
        )


def claim_due_tasks(
    session: Session, *, now: datetime, limit: int, lease_s: float, batch_size: int
) -> list[Claim]:
    """Lease up to `limit` due tasks of unpaused providers, in claims of `batch_size`."""
    paused = select(ProviderPauseRow.provider).where(ProviderPauseRow.paused_until > now)
    lease = lease_due_rows(
        session,
        TrackedTask,
        due=TrackedTask.next_poll_at,
        now=now,
        limit=limit,
        lease_s=lease_s,
        conditions=[TrackedTask.provider.not_in(paused)],
    )
    return [Claim(lease.token, ids, lease.expires_at) for ids in lease.batches(batch_size)]


@dataclass(frozen=True, slots=True)
class _Leased:
    task_pk: int
    task_id: str
    snapshot: TaskSnapshot


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What one batch did: how many were polled, and the outcomes by label."""

    polled: int
    skipped: int  # still leased, but too close to the lease's end to start a poll
    outcomes: dict[str, int]


SessionFactory = Callable[[], Any]  # a context manager yielding a Session in a transaction


def poll_batch(
    claim: Claim,
    *,
    provider: Provider,
    session_scope: SessionFactory,
    policy: PollPolicy,
    fetch_margin_s: float,
    concurrency: int = 1,
    now: Callable[[], datetime] = utc_now,
    rng: random.Random | None = None,
) -> BatchSummary:
    """Poll the claimed tasks and write each outcome; tasks no longer leased are skipped.

    No transaction is open while upstream is asked. Polls that could not finish at least
    `fetch_margin_s` before the lease ends are not started: those rows fall due again.
    """
    rng = rng or random.Random()
    with session_scope() as session:
        leased = _load_leased(session, claim)
    deadline = claim.lease_expires_at - timedelta(seconds=fetch_margin_s)

    def fetch(item: _Leased) -> tuple[_Leased, PollResult, datetime] | None:
        if now() >= deadline:
            return None
        result = provider.fetch(item.task_id)
        return item, result, now()

    if concurrency > 1 and len(leased) > 1:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(leased))) as pool:
            answers = list(pool.map(fetch, leased))
    else:
        answers = [fetch(item) for item in leased]
    done = [answer for answer in answers if answer is not None]

    labels: Counter[str] = Counter()
    with session_scope() as session:
        for item, result, answered_at in done:
            outcome = decide(item.snapshot, result, now=answered_at, policy=policy, rng=rng)
            written = _write_outcome(session, claim, item, outcome, answered_at)
            labels[_label(result) if written else "lease_lost"] += 1
            if outcome.provider_pause is not None:
                _pause_provider(session, provider.name, outcome.provider_pause, answered_at)
    summary = BatchSummary(polled=len(done), skipped=len(leased) - len(done), outcomes=dict(labels))
    log.info("polled %d tasks: %s", summary.polled, summary.outcomes)
    if summary.skipped:
        log.warning(
            "%d claimed tasks were not polled: their lease would have ended before an answer "
            "(raise TRACKER_POLL_LEASE_S or TRACKER_POLL_CONCURRENCY, or lower the batch size)",
            summary.skipped,
        )
    return summary


def _load_leased(session: Session, claim: Claim) -> list[_Leased]:
    rows = session.execute(
        select(
            TrackedTask.id,
            TrackedTask.task_id,
            TrackedTask.status,
            TrackedTask.created_at,
            TrackedTask.not_found_since,
            TrackedTask.consecutive_errors,
        ).where(TrackedTask.id.in_(claim.task_pks), TrackedTask.lease_token == claim.lease_token)
    ).all()
    return [
        _Leased(
            task_pk=row.id,
            task_id=row.task_id,
            snapshot=TaskSnapshot(
                status=TaskStatus(row.status),
                created_at=row.created_at,
                not_found_since=row.not_found_since,
                consecutive_errors=row.consecutive_errors,
            ),
        )
        for row in rows
        if not TaskStatus(row.status).is_terminal
    ]


def _write_outcome(
    session: Session, claim: Claim, item: _Leased, outcome: PollOutcome, at: datetime
) -> bool:
    """Write one poll's outcome, and its transition if any, if the lease still holds."""
    values: dict[str, Any] = {
        "next_poll_at": outcome.next_poll_at,
        "lease_token": None,
        "lease_expires_at": None,
        "last_polled_at": at,
        "updated_at": at,
        "not_found_since": outcome.not_found_since,
        "consecutive_errors": outcome.consecutive_errors,
        "last_error": outcome.last_error,
        "poll_count": TrackedTask.poll_count + 1,
        "error_count": TrackedTask.error_count + (1 if outcome.counts_as_error else 0),
    }
    if outcome.new_status is not None:
        values["status"] = outcome.new_status.value
        if outcome.new_status.is_terminal:
            values["completed_at"] = at
    if outcome.result_urls is not None:
        values["result_urls"] = list(outcome.result_urls)
    if outcome.upstream_message is not None:
        values["upstream_message"] = outcome.upstream_message
    if outcome.details is not None:
        values["details"] = dict(outcome.details)
    result = session.execute(
        update(TrackedTask)
        .where(
            TrackedTask.id == item.task_pk,
            TrackedTask.lease_token == claim.lease_token,
            TrackedTask.status == item.snapshot.status.value,
        )
        .values(values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    if outcome.new_status is not None:
        session.execute(
            insert(Transition).values(
                task_pk=item.task_pk,
                from_status=item.snapshot.status.value,
                to_status=outcome.new_status.value,
                occurred_at=at,
                upstream_payload=dict(outcome.payload) or None,
                note=_transition_note(outcome),
            )
        )
        enqueue_deliveries(
            session,
            task_pk=item.task_pk,
            old_status=item.snapshot.status,
            new_status=outcome.new_status,
            at=at,
        )
    return True


def _transition_note(outcome: PollOutcome) -> str | None:
    if outcome.new_status is TaskStatus.EXPIRED:
        return "tracked for longer than TRACKER_MAX_TRACKING_AGE_S"
    if outcome.new_status is TaskStatus.NOT_FOUND:
        return outcome.last_error
    return outcome.upstream_message


def _pause_provider(session: Session, name: str, pause: ProviderPause, at: datetime) -> None:
    """Pause polling of `name` until `pause.until`, unless a longer pause already holds."""
    current = session.get(ProviderPauseRow, name, with_for_update=True)
    if current is None:
        session.add(
            ProviderPauseRow(
                provider=name, paused_until=pause.until, reason=pause.reason, updated_at=at
            )
        )
    elif current.paused_until < pause.until:
        current.paused_until, current.reason, current.updated_at = pause.until, pause.reason, at
    session.flush()


def _label(result: PollResult) -> str:
    if isinstance(result, TaskReport):
        return result.status.value
    if isinstance(result, TaskMissing):
        return "missing"
    return result.kind
