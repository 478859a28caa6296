"""Webhook use cases shared by the CLI and Python callers: endpoints, deliveries, redelivery.

Secrets are returned only by the calls that create them (`add_endpoint`, `rotate_secret`,
`add_task_webhook`); every view of an endpoint leaves them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from tracker.errors import Conflict, InvalidInput, TrackerError
from tracker.models import DeliveryAttempt, TrackedTask, WebhookDelivery, WebhookEndpoint
from tracker.webhooks.events import PER_TASK_EVENTS, parse_events
from tracker.webhooks.guard import AddressPolicy, RefusedURL, Resolver, check_url, system_resolver
from tracker.webhooks.outbox import PENDING
from tracker.webhooks.signing import generate_secret

__all__ = [
    "AttemptView",
    "DeliveryView",
    "EndpointView",
    "InvalidWebhookURL",
    "TaskSubscription",
    "UnknownDelivery",
    "UnknownEndpoint",
    "add_endpoint",
    "add_task_webhook",
    "get_delivery",
    "get_endpoint",
    "list_deliveries",
    "list_endpoints",
    "redeliver",
    "redeliver_failed",
    "remove_endpoint",
    "rotate_secret",
    "set_enabled",
    "subscribe_tasks",
    "update_endpoint",
]

DELIVERY_STATUSES = ("pending", "delivered", "failed")


class InvalidWebhookURL(InvalidInput):
    pass


class UnknownEndpoint(TrackerError):
    pass


class UnknownDelivery(TrackerError):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointView:
    id: int
    url: str
    events: tuple[str, ...]
    enabled: bool
    disabled_reason: str | None
    task_id: str | None  # set for a per-task endpoint
    failing_since: datetime | None
    created_at: datetime
    rotating_until: datetime | None  # the previous secret still signs until then


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    endpoint: EndpointView
    secret: str  # shown once


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
    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: str
    attempts: tuple[AttemptView, ...] = ()


def _endpoint_view(row: WebhookEndpoint, task_id: str | None = None) -> EndpointView:
    return EndpointView(
        id=row.id,
        url=row.url,
        events=tuple(row.events),
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        task_id=task_id,
        failing_since=row.failing_since,
        created_at=row.created_at,
        rotating_until=row.previous_secret_expires_at if row.previous_secret else None,
    )


def _checked_url(url: str, policy: AddressPolicy, resolve: Resolver) -> str:
    try:
        return check_url(url, policy, resolve=resolve)
    except RefusedURL as error:
        raise InvalidWebhookURL(str(error)) from None


def add_endpoint(
    session: Session,
    url: str,
    *,
    events: Sequence[str] = (),
    now: datetime,
    policy: AddressPolicy,
    resolve: Resolver = system_resolver,
) -> CreatedEndpoint:
    """Add a webhook endpoint for every task; its secret is in the result, and only there."""
    checked = _checked_url(url, policy, resolve)
    try:
        event_names = parse_events(events)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    secret = generate_secret()
    row = WebhookEndpoint(
        url=checked,
        events=list(event_names),
        secret=secret,
        enabled=True,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return CreatedEndpoint(_endpoint_view(row), secret)


@dataclass(frozen=True, slots=True)
class TaskSubscription:
    secret: str | None  # the new signing secret, shown once; None when nothing was added
    task_ids: frozenset[str]  # the tasks that now send to the URL with that secret


def add_task_webhook(
    session: Session,
    task_ids: Sequence[str],
    url: str,
    *,
    now: datetime,
    policy: AddressPolicy,
    provider: str = "tensorslab",
    resolve: Resolver = system_resolver,
) -> str | None:
    """Send how each task ends to `url`, signed with one new secret (returned, shown once).

    Tasks that already send to `url` are left as they are; None when every one of them does.
    """
    return subscribe_tasks(
        session, task_ids, url, now=now, policy=policy, provider=provider, resolve=resolve
    ).secret


def subscribe_tasks(
    session: Session,
    task_ids: Sequence[str],
    url: str,
    *,
    now: datetime,
    policy: AddressPolicy,
    provider: str = "tensorslab",
    resolve: Resolver = system_resolver,
) -> TaskSubscription:
    """`add_task_webhook`, also saying which tasks the new secret is for."""
    checked = _checked_url(url, policy, resolve)
    found = session.execute(
        select(TrackedTask.id, TrackedTask.task_id).where(
            TrackedTask.provider == provider, TrackedTask.task_id.in_(list(task_ids))
        )
    ).all()
    already = set(
        session.scalars(
            select(WebhookEndpoint.task_pk).where(
                WebhookEndpoint.task_pk.in_([pk for pk, _ in found]),
                WebhookEndpoint.url == checked,
                WebhookEndpoint.removed_at.is_(None),
            )
        )
    )
    missing = [(pk, task_id) for pk, task_id in found if pk not in already]
    if not missing:
        return TaskSubscription(None, frozenset())
    secret = generate_secret()
    for task_pk, _ in missing:
        session.add(
            WebhookEndpoint(
                url=checked,
                events=list(PER_TASK_EVENTS),
                secret=secret,
                enabled=True,
                task_pk=task_pk,
                created_at=now,
                updated_at=now,
            )
        )
    session.flush()
    return TaskSubscription(secret, frozenset(task_id for _, task_id in missing))


def _endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint:
    row = session.get(WebhookEndpoint, endpoint_id)
    if row is None or row.removed_at is not None:
        raise UnknownEndpoint(f"no webhook endpoint with ID {endpoint_id}")
    return row


def get_endpoint(session: Session, endpoint_id: int) -> EndpointView:
    row = _endpoint(session, endpoint_id)
    task_id = None
    if row.task_pk is not None:
        task_id = session.scalar(select(TrackedTask.task_id).where(TrackedTask.id == row.task_pk))
    return _endpoint_view(row, task_id)


def update_endpoint(
    session: Session,
    endpoint_id: int,
    *,
    now: datetime,
    policy: AddressPolicy,
    url: str | None = None,
    events: Sequence[str] | None = None,
    enabled: bool | None = None,
    resolve: Resolver = system_resolver,
) -> EndpointView:
    """Change an endpoint's URL, events or enabled state; what is not given stays."""
    row = _endpoint(session, endpoint_id)
    if url is not None:
        row.url = _checked_url(url, policy, resolve)
    if events is not None:
        try:
            row.events = list(parse_events(events))
        except ValueError as error:
            raise InvalidInput(str(error)) from None
    if enabled is not None:
        set_enabled(session, endpoint_id, enabled, now=now)
    row.updated_at = now
    session.flush()
    return get_endpoint(session, endpoint_id)


def list_endpoints(session: Session, *, include_per_task: bool = False) -> list[EndpointView]:
    query = (
        select(WebhookEndpoint, TrackedTask.task_id)
        .outerjoin(TrackedTask, TrackedTask.id == WebhookEndpoint.task_pk)
        .where(WebhookEndpoint.removed_at.is_(None))
        .order_by(WebhookEndpoint.id)
    )
    if not include_per_task:
        query = query.where(WebhookEndpoint.task_pk.is_(None))
    return [_endpoint_view(row, task_id) for row, task_id in session.execute(query).all()]


def remove_endpoint(session: Session, endpoint_id: int, *, now: datetime) -> EndpointView:
    """Stop sending to an endpoint. Its deliveries and attempts stay, for the record."""
    row = _endpoint(session, endpoint_id)
    row.removed_at = now
    row.enabled = False
    row.disabled_reason = "removed"
    row.updated_at = now
    session.flush()
    return _endpoint_view(row)


def set_enabled(
    session: Session, endpoint_id: int, enabled: bool, *, now: datetime
) -> EndpointView:
    row = _endpoint(session, endpoint_id)
    row.enabled = enabled
    row.disabled_reason = None if enabled else "disabled by the user"
    if enabled:
        row.failing_since = None
    row.updated_at = now
    session.flush()
    return _endpoint_view(row)


def rotate_secret(
    session: Session, endpoint_id: int, *, now: datetime, overlap_s: float
) -> CreatedEndpoint:
    """A new secret; the old one keeps signing too for `overlap_s`, so receivers can switch."""
    if overlap_s < 0:
        raise InvalidInput("the overlap must not be negative")
    row = _endpoint(session, endpoint_id)
    row.previous_secret = row.secret
    row.previous_secret_expires_at = now + timedelta(seconds=overlap_s)
    row.secret = generate_secret()
    row.updated_at = now
    session.flush()
    return CreatedEndpoint(_endpoint_view(row), row.secret)


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
        status=row.status,
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


def list_deliveries(
    session: Session,
    *,
    task_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
    with_attempts: bool = False,
) -> list[DeliveryView]:
    """Deliveries, newest first; `before_id` continues a listing below that delivery."""
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidInput(
            f"unknown delivery status {status!r}; valid: {', '.join(DELIVERY_STATUSES)}"
        )
    query = _delivery_query().order_by(WebhookDelivery.id.desc()).limit(limit)
    if task_id is not None:
        query = query.where(TrackedTask.task_id == task_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    found = session.execute(query).all()
    attempts: dict[int, list[DeliveryAttempt]] = {row.id: [] for row, _, _ in found}
    if with_attempts and attempts:
        for attempt in session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(list(attempts)))
            .order_by(DeliveryAttempt.id)
        ):
            attempts[attempt.delivery_id].append(attempt)
    return [_delivery_view(row, url, tid, attempts[row.id]) for row, url, tid in found]


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
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status != PENDING)
        .values(
            status=PENDING,
            next_attempt_at=now,
            attempt_count=0,
            lease_token=None,
            lease_expires_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def redeliver(session: Session, ref: str, *, now: datetime) -> DeliveryView:
    """Send a delivery again (any status but pending), with the same `webhook-id`."""
    row, url, task_id = _find_delivery(session, ref)
    if row.status == PENDING:
        raise Conflict(f"delivery {row.id} is still pending; it will be sent on its own")
    _requeue(session, [row.id], now)
    session.refresh(row)
    return _delivery_view(row, url, task_id)


def redeliver_failed(session: Session, *, since: datetime, now: datetime) -> int:
    """Send again every failed delivery created since `since`; returns how many."""
    ids = list(
        session.scalars(
            select(WebhookDelivery.id).where(
                WebhookDelivery.status == "failed", WebhookDelivery.created_at >= since
            )
        )
    )
    for start in range(0, len(ids), 500):
        _requeue(session, ids[start : start + 500], now)
    return len(ids)
