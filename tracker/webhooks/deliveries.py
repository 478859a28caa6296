"""Webhook delivery use cases shared by every edge: list, show with attempts, redeliver.

Deliveries are written by the outbox (`outbox.py`) and sent by `sender.py`; these calls only
read them, put finished ones back in line with the same `webhook-id` (`redeliver`), and make a
pending one due now (`send_now`: the next tick sends it, however far off its retry was). A
delivery held for a disabled endpoint shows as pending with no next attempt and stays held:
enabling the endpoint releases it. A delivery is named by its number (`12`) or its message ID
(`msg_...`) everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from tracker.db.clock import database_now
from tracker.db.models import DeliveryAttempt, TrackedTask, WebhookDelivery, WebhookEndpoint
from tracker.errors import (
    AlreadyDelivered,
    DeliveryHeld,
    DeliveryPending,
    InvalidInput,
    UnknownDelivery,
    UnknownEndpoint,
)
from tracker.states import DeliveryStatus
from tracker.webhooks.events import EVENT_TYPES

__all__ = [
    "AttemptView",
    "DeliveryPage",
    "DeliveryView",
    "get_delivery",
    "page_deliveries",
    "redeliver",
    "redeliver_failed",
    "send_now",
]

MAX_DELIVERY_NUMBER = 2**63 - 1
# A delivery as read: the row, its endpoint's URL, its task's ID and provider (None, None: no task)
_Found = tuple[WebhookDelivery, str, str | None, str | None]


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
    task_id: str | None  # None for an event about no task (webhook.test)
    provider: str | None = None  # the task's provider; None with no task
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


def _delivery_query() -> Select[WebhookDelivery, str, str | None, str | None]:
    return (
        select(WebhookDelivery, WebhookEndpoint.url, TrackedTask.task_id, TrackedTask.provider)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .outerjoin(TrackedTask, TrackedTask.id == WebhookDelivery.task_pk)
    )


def _delivery_view(found: _Found, attempts: Sequence[DeliveryAttempt] = ()) -> DeliveryView:
    row, url, task_id, provider = found
    return DeliveryView(
        id=row.id,
        message_id=row.message_id,
        endpoint_id=row.endpoint_id,
        url=url,
        task_id=task_id,
        provider=provider,
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
    provider: str | None = None,
    status: DeliveryStatus | str | None = None,
    endpoint_id: int | None = None,
    event_type: str | None = None,
    created_since: datetime | None = None,
    created_before: datetime | None = None,
    limit: int = 50,
    before_id: int | None = None,
    with_attempts: bool = False,
) -> DeliveryPage:
    """One page of deliveries, newest first, and where the next page starts (None: no more).

    Filters: the task (and its provider), the status, the endpoint, the event type, and when
    the delivery was written (`created_before` exclusive)."""
    wanted = _delivery_status(status)
    if event_type is not None and event_type not in EVENT_TYPES:
        raise InvalidInput(
            f"unknown event type {event_type[:60]!r}; valid: {', '.join(EVENT_TYPES)}"
        )
    query = _delivery_query().order_by(WebhookDelivery.id.desc()).limit(limit + 1)
    if task_id is not None:
        query = query.where(TrackedTask.task_id == task_id)
    if provider is not None:
        query = query.where(TrackedTask.provider == provider)
    if wanted is not None:
        query = query.where(WebhookDelivery.status == wanted.value)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    if event_type is not None:
        query = query.where(WebhookDelivery.event_type == event_type)
    if created_since is not None:
        query = query.where(WebhookDelivery.created_at >= _utc(created_since))
    if created_before is not None:
        query = query.where(WebhookDelivery.created_at < _utc(created_before))
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    found = session.execute(query).all()
    more = len(found) > limit
    found = found[:limit]
    attempts: dict[int, list[DeliveryAttempt]] = {row.id: [] for row, *_ in found}
    if with_attempts and attempts:
        for attempt in session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(list(attempts)))
            .order_by(DeliveryAttempt.id)
        ):
            attempts[attempt.delivery_id].append(attempt)
    views = [
        _delivery_view((row, url, task_id, provider), attempts[row.id])
        for row, url, task_id, provider in found
    ]
    return DeliveryPage(views, views[-1].id if more else None)


def _utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # a bound past the years 1-9999 in UTC: before or after every row
        early = moment.year == datetime.min.year
        return (datetime.min if early else datetime.max).replace(tzinfo=UTC)


def _delivery_status(status: DeliveryStatus | str | None) -> DeliveryStatus | None:
    if status is None:
        return None
    try:
        return DeliveryStatus(status)
    except ValueError:
        valid = ", ".join(item.value for item in DeliveryStatus)
        raise InvalidInput(f"unknown delivery status {status!r}; valid: {valid}") from None


def _find_delivery(session: Session, ref: str | int) -> _Found:
    ref = str(ref).strip()
    unknown = UnknownDelivery(f"no webhook delivery {ref!r} (give its number or its msg_ ID)")
    query = _delivery_query()
    if ref.isascii() and ref.isdigit():
        if not 0 < int(ref) <= MAX_DELIVERY_NUMBER:
            raise unknown
        query = query.where(WebhookDelivery.id == int(ref))
    elif ref.startswith("msg_") and len(ref) <= 40:
        query = query.where(WebhookDelivery.message_id == ref)
    else:
        raise unknown
    found = session.execute(query).first()
    if found is None:
        raise unknown
    row, url, task_id, provider = found
    return row, url, task_id, provider


def get_delivery(session: Session, ref: str | int) -> DeliveryView:
    """One delivery with every attempt, oldest first. `ref` is its number or message ID."""
    found = _find_delivery(session, ref)
    attempts = session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id == found[0].id)
        .order_by(DeliveryAttempt.id)
    ).all()
    return _delivery_view(found, attempts)


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


def redeliver(
    session: Session, ref: str | int, *, now: datetime | None = None, pending_now: bool = False
) -> DeliveryView:
    """Send a finished delivery (delivered or failed) again, with the same `webhook-id`, through
    a fresh round of the retry schedule. A pending one is refused (`DeliveryPending`), or with
    `pending_now` made due now (`send_now`'s rules)."""
    found = _find_delivery(session, ref)
    row = found[0]
    now = now or database_now(session)
    if row.status == DeliveryStatus.PENDING:
        if not pending_now and row.next_attempt_at is not None:
            raise DeliveryPending(
                f"delivery {row.id} is still pending and will be sent on its own; "
                "`tracker redeliver --now` sends it now"
            )
        return _due_now(session, found, now)
    _requeue(session, [row.id], now)
    session.refresh(row)
    return _delivery_view(found)


def send_now(session: Session, ref: str | int, *, now: datetime | None = None) -> DeliveryView:
    """Make a delivery due now, so the next tick sends it (`redeliver --now`).

    Pending, waiting for a retry however far off: due now, in the same round of retries (the
    attempt count stays). Pending and being sent at this moment: left alone. Held (its endpoint
    is disabled): `DeliveryHeld`, it stays held. Failed: sent again as `redeliver` does.
    Delivered: `AlreadyDelivered`, nothing changes (`redeliver` without --now sends it again).
    """
    row = _find_delivery(session, ref)[0]
    if row.status == DeliveryStatus.DELIVERED:
        raise AlreadyDelivered(
            f"delivery {row.id} was delivered already; `tracker redeliver {row.id}` (without "
            "--now) sends it again"
        )
    return redeliver(session, ref, now=now, pending_now=True)


def _due_now(session: Session, found: _Found, now: datetime) -> DeliveryView:
    row = found[0]
    if row.next_attempt_at is None:
        raise DeliveryHeld(
            f"delivery {row.id} is held: endpoint {row.endpoint_id} is disabled, and it stays "
            f"held; `tracker webhooks enable {row.endpoint_id}` sends it"
        )
    # A leased row is being sent right now (its due time is then its lease's end): leave it.
    leased = row.lease_token is not None and (
        row.lease_expires_at is not None and row.lease_expires_at > now
    )
    if not leased and row.next_attempt_at > now:
        session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == row.id,
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at.is_not(None),
            )
            .values(next_attempt_at=now, lease_token=None, lease_expires_at=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        session.refresh(row)
    return _delivery_view(found)


def redeliver_failed(
    session: Session,
    *,
    since: datetime,
    endpoint_id: int | None = None,
    now: datetime | None = None,
) -> int:
    """Send again every failed delivery created since `since` (of one endpoint, if given);
    returns how many."""
    now = now or database_now(session)
    query = select(WebhookDelivery.id).where(
        WebhookDelivery.status == DeliveryStatus.FAILED,
        WebhookDelivery.created_at >= since,
    )
    if endpoint_id is not None:
        if session.get(WebhookEndpoint, endpoint_id) is None:
            raise UnknownEndpoint(f"no webhook endpoint with ID {endpoint_id}")
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    ids = list(session.scalars(query))
    for start in range(0, len(ids), 500):
        _requeue(session, ids[start : start + 500], now)
    return len(ids)
