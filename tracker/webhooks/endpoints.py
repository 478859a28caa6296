"""Webhook endpoint use cases shared by every edge: add, list, change, rotate, remove.

Secrets are returned only by the calls that create them (`add_endpoint`, `rotate_secret`,
`add_task_webhook`); every view of an endpoint leaves them out, and shows only the names of
its custom headers (their values may be credentials).

A URL may come as a `VettedURL` (checked by `guard.vet_url` before the caller's transaction
opened, as the edges do, so no DNS lookup runs inside it) or as a string (checked here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from tracker.db.clock import database_now
from tracker.db.models import TrackedTask, WebhookDelivery, WebhookEndpoint
from tracker.db.upsert import insert_for
from tracker.errors import InvalidInput, InvalidWebhookURL, UnknownEndpoint
from tracker.states import DeliveryStatus
from tracker.upstream.names import DEFAULT_PROVIDER
from tracker.webhooks.events import PER_TASK_EVENTS, parse_events
from tracker.webhooks.guard import (
    AddressPolicy,
    RefusedURL,
    Resolver,
    VettedURL,
    check_url,
    system_resolver,
)
from tracker.webhooks.headers import validate_headers
from tracker.webhooks.signing import generate_secret

__all__ = [
    "CreatedEndpoint",
    "EndpointView",
    "TaskSubscription",
    "add_endpoint",
    "get_endpoint",
    "list_endpoints",
    "remove_endpoint",
    "rotate_secret",
    "set_enabled",
    "subscribe_tasks",
    "update_endpoint",
]

_INSERT_CHUNK = 500  # rows per INSERT: within SQLite's and PostgreSQL's parameter limits


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
    header_names: tuple[str, ...] = ()  # its custom headers; the values are never shown


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    endpoint: EndpointView
    secret: str  # shown once


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
        header_names=tuple(sorted(row.headers or {}, key=str.lower)),  # JSONB keeps no order
    )


def _checked_url(url: str | VettedURL, policy: AddressPolicy, resolve: Resolver) -> str:
    if isinstance(url, VettedURL):
        return url.url
    try:
        return check_url(url, policy, resolve=resolve)
    except RefusedURL as error:
        raise InvalidWebhookURL(str(error)) from None


def add_endpoint(
    session: Session,
    url: str | VettedURL,
    *,
    events: Sequence[str] = (),
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    now: datetime | None = None,
    policy: AddressPolicy,
    resolve: Resolver = system_resolver,
) -> CreatedEndpoint:
    """Add a webhook endpoint for every task; its secret is in the result, and only there.

    `headers` are sent with every attempt (`webhooks.headers` says which are refused)."""
    checked = _checked_url(url, policy, resolve)
    custom = validate_headers(headers)
    try:
        event_names = parse_events(events)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    now = now or database_now(session)
    secret = generate_secret()
    row = WebhookEndpoint(
        url=checked,
        events=list(event_names),
        secret=secret,
        headers=custom,
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


def subscribe_tasks(
    session: Session,
    task_ids: Sequence[str],
    url: str | VettedURL,
    *,
    now: datetime | None = None,
    policy: AddressPolicy,
    provider: str = DEFAULT_PROVIDER,
    resolve: Resolver = system_resolver,
) -> TaskSubscription:
    """Send how each of `task_ids` ends to `url`, signed with one new secret (shown once).

    Tasks that already send to `url` are left as they are; the result says which tasks the new
    secret is for (none, and no secret, when every one of them already sends to `url`). The
    unique index on live (task, URL) decides, not a prior read: of two callers adding the same
    URL to a task at once, one inserts its endpoint and the other reports no secret for it.
    """
    now = now or database_now(session)
    checked = _checked_url(url, policy, resolve)
    found: dict[int, str] = {
        task_pk: task_id
        for task_pk, task_id in session.execute(
            select(TrackedTask.id, TrackedTask.task_id).where(
                TrackedTask.provider == provider, TrackedTask.task_id.in_(list(task_ids))
            )
        ).all()
    }
    secret = generate_secret()
    rows = [
        {
            "url": checked,
            "events": list(PER_TASK_EVENTS),
            "secret": secret,
            "enabled": True,
            "task_pk": task_pk,
            "created_at": now,
            "updated_at": now,
        }
        for task_pk in sorted(found)  # one order for every caller: no deadlock between two
    ]
    added: set[int] = set()
    for start in range(0, len(rows), _INSERT_CHUNK):
        statement = (
            insert_for(session, WebhookEndpoint)
            .values(rows[start : start + _INSERT_CHUNK])
            .on_conflict_do_nothing(
                index_elements=["task_pk", "url"],
                index_where=and_(
                    WebhookEndpoint.task_pk.is_not(None), WebhookEndpoint.removed_at.is_(None)
                ),
            )
            .returning(WebhookEndpoint.task_pk)
        )
        added.update(pk for pk in session.scalars(statement) if pk is not None)
    if not added:
        return TaskSubscription(None, frozenset())
    return TaskSubscription(secret, frozenset(found[pk] for pk in added))


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
    now: datetime | None = None,
    policy: AddressPolicy,
    url: str | VettedURL | None = None,
    events: Sequence[str] | None = None,
    enabled: bool | None = None,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    resolve: Resolver = system_resolver,
) -> EndpointView:
    """Change an endpoint's URL, events, custom headers (the whole set: `{}` removes them) or
    enabled state; what is not given stays."""
    custom = None if headers is None else validate_headers(headers)
    now = now or database_now(session)
    row = _endpoint(session, endpoint_id)
    if custom is not None:
        row.headers = custom
    if url is not None:
        checked = _checked_url(url, policy, resolve)
        if row.task_pk is not None and checked != row.url and _task_sends_to(session, row, checked):
            raise InvalidInput(
                f"the task of webhook {row.id} already sends to {checked}; "
                "remove one of the two instead"
            )
        row.url = checked
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


def _task_sends_to(session: Session, row: WebhookEndpoint, url: str) -> bool:
    """Whether another live endpoint of `row`'s task has `url` (one per task and URL)."""
    return (
        session.scalar(
            select(WebhookEndpoint.id).where(
                WebhookEndpoint.task_pk == row.task_pk,
                WebhookEndpoint.url == url,
                WebhookEndpoint.removed_at.is_(None),
                WebhookEndpoint.id != row.id,
            )
        )
        is not None
    )


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


def remove_endpoint(
    session: Session, endpoint_id: int, *, now: datetime | None = None
) -> EndpointView:
    """Stop sending to an endpoint. Its deliveries and attempts stay, for the record; the ones
    held while it was disabled will never be sent, so they fail now, without an attempt."""
    now = now or database_now(session)
    row = _endpoint(session, endpoint_id)
    row.removed_at = now
    row.enabled = False
    row.disabled_reason = "removed"
    row.updated_at = now
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at.is_(None),
        )
        .values(
            status=DeliveryStatus.FAILED,
            last_error="the endpoint was removed",
            lease_token=None,
            lease_expires_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return _endpoint_view(row)


def set_enabled(
    session: Session, endpoint_id: int, enabled: bool, *, now: datetime | None = None
) -> EndpointView:
    """Disable an endpoint (its deliveries are held, not sent) or enable it again.

    Enabling releases every delivery held for it: they fall due now, with their webhook-ids.
    """
    now = now or database_now(session)
    row = _endpoint(session, endpoint_id)
    row.enabled = enabled
    row.disabled_reason = None if enabled else "disabled by the user"
    if enabled:
        row.failing_since = None
    row.updated_at = now
    # The endpoint's row is written (and locked) first: a transition or a send that holds a
    # delivery for it locks that row too, so its held rows are committed before this release
    # reads them, or it sees the endpoint enabled and does not hold.
    session.flush()
    if enabled:
        _release_held(session, endpoint_id, now)
    return _endpoint_view(row)


def _release_held(session: Session, endpoint_id: int, now: datetime) -> None:
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == DeliveryStatus.PENDING.value,
            WebhookDelivery.next_attempt_at.is_(None),
        )
        .values(next_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def rotate_secret(
    session: Session, endpoint_id: int, *, overlap_s: float, now: datetime | None = None
) -> CreatedEndpoint:
    """A new secret; the old one keeps signing too for `overlap_s`, so receivers can switch."""
    now = now or database_now(session)
    if overlap_s < 0:
        raise InvalidInput("the overlap must not be negative")
    row = _endpoint(session, endpoint_id)
    row.previous_secret = row.secret
    row.previous_secret_expires_at = now + timedelta(seconds=overlap_s)
    row.secret = generate_secret()
    row.updated_at = now
    session.flush()
    return CreatedEndpoint(_endpoint_view(row), row.secret)
