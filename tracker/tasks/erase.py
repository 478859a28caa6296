"""Erasing tasks with their whole history: transitions, webhook deliveries and their attempts,
and the tasks' webhook subscriptions (the endpoints stay: other tasks may use them). Shared by
`forget` (one task, on request) and `prune`
(retention). The caller decides which tasks may go; this only removes them, children first,
inside the caller's transaction, and counts what went.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Delete, delete, select
from sqlalchemy.orm import Session

from tracker.db.models import (
    DeliveryAttempt,
    ScheduledPoll,
    TrackedTask,
    Transition,
    WebhookDelivery,
    WebhookSubscription,
)

__all__ = ["Erased", "erase_tasks"]


@dataclass(frozen=True, slots=True)
class Erased:
    """How many rows of each kind went."""

    tasks: int = 0
    transitions: int = 0
    deliveries: int = 0
    attempts: int = 0
    subscriptions: int = 0  # the task's links to endpoints (`register --webhook`)

    def __add__(self, other: Erased) -> Erased:
        return Erased(
            self.tasks + other.tasks,
            self.transitions + other.transitions,
            self.deliveries + other.deliveries,
            self.attempts + other.attempts,
            self.subscriptions + other.subscriptions,
        )


def erase_tasks(session: Session, task_pks: Sequence[int]) -> Erased:
    """Delete the tasks `task_pks` and everything that hangs off them; the counts."""
    if not task_pks:
        return Erased()
    pks = list(task_pks)
    deliveries = select(WebhookDelivery.id).where(WebhookDelivery.task_pk.in_(pks))
    attempts = _deleted(
        session, delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(deliveries))
    )
    delivery_count = _deleted(
        session, delete(WebhookDelivery).where(WebhookDelivery.task_pk.in_(pks))
    )
    transitions = _deleted(session, delete(Transition).where(Transition.task_pk.in_(pks)))
    subscriptions = _deleted(
        session, delete(WebhookSubscription).where(WebhookSubscription.task_pk.in_(pks))
    )
    # Only live tasks have one; removed here all the same, children first, before the task.
    _deleted(session, delete(ScheduledPoll).where(ScheduledPoll.task_pk.in_(pks)))
    tasks = _deleted(session, delete(TrackedTask).where(TrackedTask.id.in_(pks)))
    return Erased(tasks, transitions, delivery_count, attempts, subscriptions)


def _deleted(session: Session, statement: Delete) -> int:
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]
