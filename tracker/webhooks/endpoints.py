"""Webhook endpoint use cases shared by every edge: add, list, change, rotate, remove.

A URL has one live endpoint and one secret (a partial unique index on live `url` decides, not a
prior read): adding a URL that has one returns it, and registering tasks with it subscribes
them to it. An endpoint is for all tasks (`webhooks add`) or for the tasks subscribed to it
(`register --webhook URL`). Secrets are stored encrypted (`vault`) and returned only by the
calls that create them (`add_endpoint` of a new URL, `rotate_secret`, `subscribe_tasks` of a
new URL); every view of an endpoint leaves them out, and shows only the names of its custom
headers (their values may be credentials). Adding a URL that has an endpoint never changes
that endpoint's headers: `update_endpoint(headers=...)` does.

A URL may come as a `VettedURL` (checked by `guard.vet_url` before the caller's transaction
opened, as the edges do, so no DNS lookup runs inside it) or as a string (checked here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tracker.db.clock import database_now
from tracker.db.models import TrackedTask, WebhookDelivery, WebhookEndpoint, WebhookSubscription
from tracker.db.upsert import insert_for
from tracker.errors import EndpointURLTaken, InvalidInput, InvalidWebhookURL, UnknownEndpoint
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
from tracker.webhooks.vault import get_vault

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
_CLAIM_TRIES = 3  # a URL's endpoint removed between our conflict and our read: insert again


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointView:
    id: int
    url: str
    events: tuple[str, ...]
    enabled: bool
    disabled_reason: str | None
    all_tasks: bool  # False: only the tasks registered with its URL (`task_count` of them)
    task_count: int
    failing_since: datetime | None
    created_at: datetime
    rotating_until: datetime | None  # rotated-out secrets also sign until then
    header_names: tuple[str, ...] = ()  # its custom headers; the values are never shown


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    endpoint: EndpointView
    secret: str | None  # shown once, when it was made; None: the URL's endpoint existed
    created: bool = True
    # The URL's endpoint existed and the headers given differ from its own: they were not
    # applied (adding a URL never changes an existing endpoint's headers).
    headers_unchanged: bool = False


def _rotating_until(row: WebhookEndpoint) -> datetime | None:
    untils = [datetime.fromisoformat(entry["until"]) for entry in row.previous_secrets or []]
    return max(untils) if untils else None


def _endpoint_view(row: WebhookEndpoint, task_count: int = 0) -> EndpointView:
    return EndpointView(
        id=row.id,
        url=row.url,
        events=tuple(row.events),
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        all_tasks=row.all_tasks,
        task_count=0 if row.all_tasks else task_count,
        failing_since=row.failing_since,
        created_at=row.created_at,
        rotating_until=_rotating_until(row),
        header_names=tuple(sorted(row.headers or {}, key=str.lower)),  # JSONB keeps no order
    )


def _checked_url(url: str | VettedURL, policy: AddressPolicy, resolve: Resolver) -> str:
    if isinstance(url, VettedURL):
        return url.url
    try:
        return check_url(url, policy, resolve=resolve)
    except RefusedURL as error:
        raise InvalidWebhookURL(str(error)) from None


def _claim_url(
    session: Session,
    url: str,
    *,
    events: Sequence[str],
    all_tasks: bool,
    now: datetime,
    headers: Mapping[str, str] | None = None,
    to_change: bool = False,
) -> tuple[WebhookEndpoint, str | None]:
    """The live endpoint of `url`, and its new secret if this call made it (else None).

    The insert and the unique index decide: of two callers adding one URL at once, one inserts,
    the other (on PostgreSQL, after the first commits) reads the row the first made. An
    existing row is locked: for update if the caller will change it (`to_change`: two such
    callers then queue instead of deadlocking), else shared, so a removal waits. `headers`
    go to a new endpoint only; an existing one keeps its own.
    """
    secret = generate_secret()
    stored = get_vault(create=True).encrypt(secret)
    for _ in range(_CLAIM_TRIES):
        inserted = session.scalar(
            insert_for(session, WebhookEndpoint)
            .values(
                url=url,
                events=list(events),
                secret=stored,
                previous_secrets=[],
                all_tasks=all_tasks,
                headers=dict(headers or {}),
                enabled=True,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=["url"], index_where=WebhookEndpoint.removed_at.is_(None)
            )
            .returning(WebhookEndpoint.id)
        )
        if inserted is not None:
            return _endpoint(session, inserted), secret
        existing = session.scalar(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.url == url, WebhookEndpoint.removed_at.is_(None))
            .with_for_update(read=not to_change)  # a removal waits, or we see it and try again
            .execution_options(populate_existing=True)
        )
        if existing is not None:
            return existing, None
    raise UnknownEndpoint(f"the endpoint of {url} was removed while it was being added; try again")


def _task_count(session: Session, endpoint_id: int) -> int:
    return (
        session.scalar(select(func.count()).where(WebhookSubscription.endpoint_id == endpoint_id))
        or 0
    )


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
    """Make sure `url` hears `events` of every task; a new endpoint's secret is in the result.

    A URL that has an endpoint keeps it (and its secret, not returned again): it becomes an
    endpoint for all tasks, and hears `events` besides the events it had (`created` False).
    `headers` (sent with every attempt; `webhooks.headers` says which are refused) go to a new
    endpoint only: an existing one keeps its headers, and `headers_unchanged` says when the
    ones given differ from them (`update_endpoint` replaces them).
    """
    checked = _checked_url(url, policy, resolve)
    custom = validate_headers(headers)
    try:
        event_names = parse_events(events)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    now = now or database_now(session)
    row, secret = _claim_url(
        session,
        checked,
        events=event_names,
        all_tasks=True,
        now=now,
        headers=custom,
        to_change=True,
    )
    if secret is not None:
        return CreatedEndpoint(_endpoint_view(row), secret)
    wanted = list(dict.fromkeys([*row.events, *event_names]))
    if not row.all_tasks or wanted != row.events:
        row.all_tasks = True
        row.events = wanted
        row.updated_at = now
        session.execute(  # every task hears it now: the subscriptions would say nothing
            delete(WebhookSubscription).where(WebhookSubscription.endpoint_id == row.id)
        )
        session.flush()
    differ = bool(custom) and {k.lower(): v for k, v in custom.items()} != {
        k.lower(): v for k, v in (row.headers or {}).items()
    }
    return CreatedEndpoint(_endpoint_view(row), None, created=False, headers_unchanged=differ)


@dataclass(frozen=True, slots=True)
class TaskSubscription:
    endpoint_id: int  # the URL's endpoint, which signs for these tasks
    secret: str | None  # its signing secret if this call made the endpoint (shown once)
    task_ids: frozenset[str]  # the tasks subscribed by this call
    all_tasks: bool  # the endpoint hears every task: nothing to subscribe


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
    """Send how each of `task_ids` ends to `url`, through the URL's one endpoint.

    The endpoint is made (for these tasks only, with a new secret in the result) when the URL
    has none; otherwise it is reused, with its secret. Tasks already subscribed are left as
    they are; the result names the ones this call subscribed. Inserts decide, not prior reads,
    so two callers subscribing one task at once subscribe it once.
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
    row, secret = _claim_url(session, checked, events=PER_TASK_EVENTS, all_tasks=False, now=now)
    if row.all_tasks:
        return TaskSubscription(row.id, secret, frozenset(), all_tasks=True)
    rows = [
        {"endpoint_id": row.id, "task_pk": task_pk, "created_at": now}
        for task_pk in sorted(found)  # one order for every caller: no deadlock between two
    ]
    added: set[int] = set()
    for start in range(0, len(rows), _INSERT_CHUNK):
        statement = (
            insert_for(session, WebhookSubscription)
            .values(rows[start : start + _INSERT_CHUNK])
            .on_conflict_do_nothing(index_elements=["endpoint_id", "task_pk"])
            .returning(WebhookSubscription.task_pk)
        )
        added.update(session.scalars(statement))
    return TaskSubscription(row.id, secret, frozenset(found[pk] for pk in added), all_tasks=False)


def _endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint:
    row = session.get(WebhookEndpoint, endpoint_id)
    if row is None or row.removed_at is not None:
        raise UnknownEndpoint(f"no webhook endpoint with ID {endpoint_id}")
    return row


def get_endpoint(session: Session, endpoint_id: int) -> EndpointView:
    row = _endpoint(session, endpoint_id)
    return _endpoint_view(row, _task_count(session, row.id))


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
        if checked != row.url:
            _refuse_taken(session, row, checked)
            row.url = checked
    if events is not None:
        try:
            row.events = list(parse_events(events))
        except ValueError as error:
            raise InvalidInput(str(error)) from None
    if enabled is not None:
        set_enabled(session, endpoint_id, enabled, now=now)
    row.updated_at = now
    try:
        session.flush()
    except IntegrityError:  # another endpoint took the URL after our check
        raise EndpointURLTaken(f"another webhook endpoint sends to {row.url} now") from None
    return get_endpoint(session, endpoint_id)


def _refuse_taken(session: Session, row: WebhookEndpoint, url: str) -> None:
    """One live endpoint per URL: moving one onto another's URL is refused, naming it."""
    other = session.scalar(
        select(WebhookEndpoint.id).where(
            WebhookEndpoint.url == url,
            WebhookEndpoint.removed_at.is_(None),
            WebhookEndpoint.id != row.id,
        )
    )
    if other is not None:
        raise EndpointURLTaken(
            f"webhook endpoint {other} already sends to {url}; remove one of the two first"
        )


def list_endpoints(session: Session, *, include_per_task: bool = False) -> list[EndpointView]:
    """Live endpoints by ID; those for subscribed tasks only with `include_per_task`."""
    counts = (
        select(WebhookSubscription.endpoint_id, func.count().label("tasks"))
        .group_by(WebhookSubscription.endpoint_id)
        .subquery()
    )
    query = (
        select(WebhookEndpoint, counts.c.tasks)
        .outerjoin(counts, counts.c.endpoint_id == WebhookEndpoint.id)
        .where(WebhookEndpoint.removed_at.is_(None))
        .order_by(WebhookEndpoint.id)
    )
    if not include_per_task:
        query = query.where(WebhookEndpoint.all_tasks.is_(True))
    return [_endpoint_view(row, tasks or 0) for row, tasks in session.execute(query).all()]


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
    return _endpoint_view(row, _task_count(session, row.id))


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
    return _endpoint_view(row, _task_count(session, row.id))


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
    until = (now + timedelta(seconds=overlap_s)).astimezone(UTC)
    still_signing = [
        entry
        for entry in row.previous_secrets or []
        if datetime.fromisoformat(entry["until"]) > now
    ]
    row.previous_secrets = [*still_signing, {"secret": row.secret, "until": until.isoformat()}]
    secret = generate_secret()
    row.secret = get_vault(create=True).encrypt(secret)
    row.updated_at = now
    session.flush()
    return CreatedEndpoint(get_endpoint(session, endpoint_id), secret)
