"""The outbox: webhook deliveries written in the same transaction as the transition they announce.

If the transaction commits, the deliveries exist and a later tick will send them; if it rolls
back, neither exists. Nothing between "status changed" and "someone will be told" can be lost.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from tracker.db.models import TrackedTask, WebhookDelivery, WebhookEndpoint, WebhookSubscription
from tracker.states import DeliveryStatus, TaskStatus
from tracker.webhooks.events import events_for_transition, payload_body

__all__ = ["enqueue_deliveries", "new_message_id"]


def new_message_id() -> str:
    """A `webhook-id`: unique per message, the same on every retry of it."""
    return f"msg_{uuid.uuid4().hex}"


def enqueue_deliveries(
    session: Session, *, task_pk: int, old_status: TaskStatus, new_status: TaskStatus, at: datetime
) -> int:
    """Write one pending delivery per (subscribed endpoint, event) of this transition.

    A disabled endpoint (by the user, a 410 or failures) still gets its deliveries, held:
    pending with no `next_attempt_at`, so no tick claims them until the endpoint is enabled
    (`endpoints.set_enabled` releases them). Removed endpoints get nothing.
    """
    endpoints = session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.removed_at.is_(None),
            or_(
                WebhookEndpoint.all_tasks.is_(True),
                WebhookEndpoint.id.in_(
                    select(WebhookSubscription.endpoint_id).where(
                        WebhookSubscription.task_pk == task_pk
                    )
                ),
            ),
        )
    ).all()
    enabled = {endpoint.id for endpoint in endpoints if endpoint.enabled}
    disabled = sorted(endpoint.id for endpoint in endpoints if not endpoint.enabled)
    if disabled:
        # Read the disabled ones again under a share lock, which an enable's write waits for:
        # either the enable committed first (send as usual; a removal: nothing), or it releases
        # the held rows only after this transaction has committed them.
        live: set[int] = set()
        for endpoint_id, is_enabled in session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.enabled)
            .where(WebhookEndpoint.id.in_(disabled), WebhookEndpoint.removed_at.is_(None))
            .order_by(WebhookEndpoint.id)
            .with_for_update(read=True)
        ).all():
            live.add(endpoint_id)
            if is_enabled:
                enabled.add(endpoint_id)
        endpoints = [e for e in endpoints if e.id in enabled or e.id in live]
    wanted = [
        (endpoint, event)
        for event in events_for_transition(new_status)
        for endpoint in endpoints
        if event in endpoint.events
    ]
    if not wanted:
        return 0
    task = session.execute(
        select(TrackedTask)
        .where(TrackedTask.id == task_pk)
        .execution_options(populate_existing=True)  # the row was just updated in SQL
    ).scalar_one()
    bodies = {
        event: payload_body(
            event_type=event,
            occurred_at=at,
            task_id=task.task_id,
            provider=task.provider,
            old_status=old_status,
            new_status=new_status,
            result_urls=task.result_urls or [],
            upstream_message=task.upstream_message,
            last_error=task.last_error,
            details=task.details or {},
            metadata=task.task_metadata or {},
            registered_at=task.created_at,
            completed_at=task.completed_at,
        )
        for event in {event for _, event in wanted}
    }
    session.execute(
        insert(WebhookDelivery),
        [
            {
                "message_id": new_message_id(),
                "endpoint_id": endpoint.id,
                "task_pk": task_pk,
                "event_type": event,
                "payload": bodies[event],
                "status": DeliveryStatus.PENDING.value,
                "attempt_count": 0,
                "next_attempt_at": at if endpoint.id in enabled else None,  # None: held
                "created_at": at,
                "updated_at": at,
            }
            for endpoint, event in wanted
        ],
    )
    return len(wanted)
