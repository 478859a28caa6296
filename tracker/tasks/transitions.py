"""Recording a change of status: the transition row and its webhook deliveries, together.

The one way a transition is written, by polls and by untrack alike. The deliveries (the
outbox) go into the same transaction as the transition, so either both exist or neither does.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from tracker.db.models import Transition
from tracker.states import TaskStatus
from tracker.webhooks.outbox import enqueue_deliveries

__all__ = ["record_transition"]


def record_transition(
    session: Session,
    *,
    task_pk: int,
    from_status: TaskStatus,
    to_status: TaskStatus,
    at: datetime,
    payload: Mapping[str, Any] | None = None,
    note: str | None = None,
) -> None:
    """Write the transition of task `task_pk` (whose row already shows `to_status`)."""
    session.execute(
        insert(Transition).values(
            task_pk=task_pk,
            from_status=from_status.value,
            to_status=to_status.value,
            occurred_at=at,
            upstream_payload=dict(payload) if payload else None,
            note=note,
        )
    )
    enqueue_deliveries(
        session, task_pk=task_pk, old_status=from_status, new_status=to_status, at=at
    )
