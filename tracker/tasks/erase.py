"""Erasing tasks with their whole history: transitions, webhook deliveries and their attempts,
and the per-task webhook endpoints. Shared by `forget` (one task, on request) and `prune`
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
    TrackedTask,
    Transition,
    WebhookDelivery,
    WebhookEndpoint,
)

__all__ = ["Erased", "erase_tasks"]


@dataclass(frozen=True, slots=True)
class Erased:
    """How many rows of each kind went."""

    tasks: int = 0
    transitions: int = 0
    deliveries: int = 0
    attempts: int = 0
    endpoints: int = 0  # per-task endpoints (`register --webhook`); shared ones stay

    def __add__(self, other: Erased) -> Erased:
        return Erased(
            self.tasks + other.tasks,
            self.transitions + other.transitions,
            self.deliveries + other.deliveries,
            self.attempts + other.attempts,
            self.endpoints + other.endpoints,
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
    endpoints = _deleted(session, delete(WebhookEndpoint).where(WebhookEndpoint.task_pk.in_(pks)))
    tasks = _deleted(session, delete(TrackedTask).where(TrackedTask.id.in_(pks)))
    return Erased(tasks, transitions, delivery_count, attempts, endpoints)


def _deleted(session: Session, statement: Delete) -> int:
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]
