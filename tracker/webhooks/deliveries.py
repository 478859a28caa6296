"""Webhook delivery use cases shared by every edge: list, show with attempts, redeliver.

Deliveries are written by the outbox (`outbox.py`) and sent by `sender.py`; these calls only
read them and put finished ones back in line, with the same `webhook-id`. A delivery held for a
disabled endpoint shows as pending with no next attempt; enabling the endpoint releases it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from tracker.db.clock import database_now
from tracker.db.models import DeliveryAttempt, TrackedTask, WebhookDelivery, WebhookEndpoint
from tracker.errors import DeliveryPending, InvalidInput, UnknownDelivery
from tracker.states import DeliveryStatus

__all__ = [
    "AttemptView",
    "DeliveryPage",
    "DeliveryView",
    "get_delivery",
    "page_deliveries",
    "redeliver",
    "redeliver_failed",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptView:
    attempted_at: datetime
    status_code: int | None
    succeeded: bool
    duration_ms: float
    error: str | None
    response_excerpt: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryView:
    id: int
    message_id: str
    endpoint_id: int
    url: str
    task_id: str
    event_type: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None  # None while pending: held (its endpoint is disabled)
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: str
    attempts: tuple[AttemptView, ...] = ()


def _delivery_query() -> Select[WebhookDelivery, str, str]:
    return (
        select(WebhookDelivery, WebhookEndpoint.url, TrackedTask.task_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(TrackedTask, TrackedTask.id == WebhookDelivery.task_pk)
    )


def _delivery_view(
    row: WebhookDelivery, url: str, task_id: str, attempts: Sequence[DeliveryAttempt] = ()
) -> DeliveryView:
    return DeliveryView(
        id=row.id,
        message_id=row.message_id,
        endpoint_id=row.endpoint_id,
        url=url,
        task_id=task_id,
        event_type=row.event_type,
        status=DeliveryStatus(row.status),
        attempt_count=row.attempt_count,
        next_attempt_at=row.next_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        payload=row.payload,
        attempts=tuple(
            AttemptView(
                attempted_at=a.attempted_at,
                status_code=a.status_code,
                succeeded=a.succeeded,
                duration_ms=a.duration_ms,
                error=a.error,
                response_excerpt=a.response_excerpt,
            )
            for a in attempts
        ),
    )


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[DeliveryView]
    next_before_id: int | None  # pass it back as `before_id` for the next page; None at the end


def page_deliveries(
    session: Session,
    *,
    task_id: str | None = None,
    status: DeliveryStatus | str | None = None,
    limit: int = 50,
    before_id: int | None = None,
    with_attempts: bool = False,
) -> DeliveryPage:
    """One page of deliveries, newest first, and where the next page starts (None: no more)."""
    wanted = _delivery_status(status)
    query = _delivery_query().order_by(WebhookDelivery.id.desc()).limit(limit + 1)
    if task_id is not None:
        query = query.where(TrackedTask.task_id == task_id)
    if wanted is not None:
        query = query.where(WebhookDelivery.status == wanted.value)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    found = session.execute(query).all()
    more = len(found) > limit
    found = found[:limit]
    attempts: dict[int, list[DeliveryAttempt]] = {row.id: [] for row, _, _ in found}
    if with_attempts and attempts:
        for attempt in session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(list(attempts)))
            .order_by(DeliveryAttempt.id)
        ):
            attempts[attempt.delivery_id].append(attempt)
    views = [_delivery_view(row, url, tid, attempts[row.id]) for row, url, tid in found]
    return DeliveryPage(views, views[-1].id if more else None)


def _delivery_status(status: DeliveryStatus | str | None) -> DeliveryStatus | None:
    if status is None:
        return None
    try:
        return DeliveryStatus(status)
    except ValueError:
        valid = ", ".join(item.value for item in DeliveryStatus)
        raise InvalidInput(f"unknown delivery status {status!r}; valid: {valid}") from None


def _find_delivery(session: Session, ref: str) -> tuple[WebhookDelivery, str, str]:
    query = _delivery_query()
    if ref.isdigit():
        query = query.where(WebhookDelivery.id == int(ref))
    else:
        query = query.where(WebhookDelivery.message_id == ref)
    found = session.execute(query).first()
    if found is None:
        raise UnknownDelivery(f"no webhook delivery {ref!r} (give its number or its msg_ ID)")
    row, url, task_id = found
    return row, url, task_id


def get_delivery(session: Session, ref: str) -> DeliveryView:
    """One delivery with every attempt, oldest first. `ref` is its number or message ID."""
    row, url, task_id = _find_delivery(session, ref)
    attempts = session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id == row.id)
        .order_by(DeliveryAttempt.id)
    ).all()
    return _delivery_view(row, url, task_id, attempts)


def _requeue(session: Session, ids: Sequence[int], now: datetime) -> None:
    # A fresh round of the retry schedule, same message ID: receivers can deduplicate on it.
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status != DeliveryStatus.PENDING)
        .values(
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
            attempt_count=0,
            lease_token=None,
            lease_expires_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def redeliver(session: Session, ref: str, *, now: datetime | None = None) -> DeliveryView:
    """Send a delivery again (any status but pending), with the same `webhook-id`."""
    row, url, task_id = _find_delivery(session, ref)
    now = now or database_now(session)
    if row.status == DeliveryStatus.PENDING and row.next_attempt_at is None:
        raise DeliveryPending(
            f"delivery {row.id} is held: endpoint {row.endpoint_id} is disabled; enabling it "
            "sends the delivery"
        )
    if row.status == DeliveryStatus.PENDING:
        raise DeliveryPending(f"delivery {row.id} is still pending; it will be sent on its own")
    _requeue(session, [row.id], now)
    session.refresh(row)
    return _delivery_view(row, url, task_id)


def redeliver_failed(session: Session, *, since: datetime, now: datetime | None = None) -> int:
    """Send again every failed delivery created since `since`; returns how many."""
    now = now or database_now(session)
    ids = list(
        session.scalars(
            select(WebhookDelivery.id).where(
                WebhookDelivery.status == DeliveryStatus.FAILED,
                WebhookDelivery.created_at >= since,
            )
        )
    )
    for start in range(0, len(ids), 500):
        _requeue(session, ids[start : start + 500], now)
    return len(ids)
