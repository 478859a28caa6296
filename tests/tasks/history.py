"""Building ended tasks with a whole history (transition, webhook subscription, delivery, attempt)
through the real use cases, for the retention and forget tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from tests.support import reschedule
from tracker.db.models import (
    DeliveryAttempt,
    TrackedTask,
    Transition,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSubscription,
)
from tracker.tasks import register, untrack
from tracker.webhooks.guard import AddressPolicy

LOOPBACK = AddressPolicy.from_setting("127.0.0.0/8")
TABLES = {
    "tasks": TrackedTask,
    "transitions": Transition,
    "deliveries": WebhookDelivery,
    "attempts": DeliveryAttempt,
    "subscriptions": WebhookSubscription,
}


def counts(session: Session) -> dict[str, int]:
    return {
        name: int(session.scalar(select(func.count()).select_from(model)) or 0)
        for name, model in TABLES.items()
    }


def ended_task(
    session: Session,
    task_id: str,
    *,
    ended_at: datetime,
    delivery: str = "delivered",  # delivered, failed, pending (a retry to come), held
) -> int:
    """A task registered with a webhook an hour before `ended_at`, cancelled at `ended_at`
    (one transition, one task.cancelled delivery with one attempt). Returns its primary key."""
    register.register(
        session,
        [task_id],
        first_poll_delay_s=5,
        now=ended_at - timedelta(hours=1),
        webhook_url=f"http://127.0.0.1:9/hooks/{task_id}",
        policy=LOOPBACK,
    )
    untrack.untrack(session, task_id, now=ended_at)
    task_pk = session.scalar(select(TrackedTask.id).where(TrackedTask.task_id == task_id))
    assert task_pk is not None
    delivery_id = session.scalar(
        select(WebhookDelivery.id).where(WebhookDelivery.task_pk == task_pk)
    )
    assert delivery_id is not None, "the per-task endpoint hears task.cancelled"
    session.execute(
        insert(DeliveryAttempt).values(
            delivery_id=delivery_id,
            attempted_at=ended_at,
            duration_ms=12.0,
            status_code=503,
            succeeded=False,
            error="HTTP 503",
            response_excerpt="busy",
        )
    )
    values: dict[str, object] = {"attempt_count": 1}
    if delivery in ("delivered", "failed"):
        values.update(status=delivery, next_attempt_at=None)
    elif delivery == "pending":
        values.update(next_attempt_at=ended_at + timedelta(hours=5))
    elif delivery == "held":
        values.update(next_attempt_at=None)
        session.execute(
            update(WebhookEndpoint)
            .where(
                WebhookEndpoint.id.in_(
                    select(WebhookSubscription.endpoint_id).where(
                        WebhookSubscription.task_pk == task_pk
                    )
                )
            )
            .values(enabled=False, disabled_reason="disabled by the user")
        )
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(values))
    return task_pk


def completed_task(
    session: Session,
    task_id: str,
    *,
    at: datetime,
    details: dict[str, Any],
    unfinished_s: float | None = 290.0,
    completed_s: float = 300.0,
    status: str = "completed",
) -> None:
    """A task registered at `at` that ended `completed_s` later (`status`), last seen
    unfinished at `unfinished_s` (None: never), its row as a poll batch writes it."""
    register.register(session, [task_id], first_poll_delay_s=5, now=at)
    ended_at = at + timedelta(seconds=completed_s)
    session.execute(
        update(TrackedTask)
        .where(TrackedTask.task_id == task_id)
        .values(
            status=status,
            details=details,
            last_seen_unfinished_at=None
            if unfinished_s is None
            else at + timedelta(seconds=unfinished_s),
            completed_at=ended_at,
            updated_at=ended_at,
        )
    )
    reschedule(session, None, task_id)
