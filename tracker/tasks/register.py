"""Registering tasks: the one use case the CLI, the HTTP API and the Python client all call.

A registration is a batch of task IDs, each with the caller's metadata and, optionally, a
webhook URL that hears how that task ends. All of it is stored in the caller's transaction, or
none of it when anything is refused (a bad ID, bad metadata, a refused URL).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from tracker.db.clock import database_now
from tracker.db.models import ScheduledPoll, TrackedTask
from tracker.db.upsert import insert_for
from tracker.errors import InvalidMetadata, InvalidTaskId
from tracker.states import TaskStatus
from tracker.tasks.ids import DEFAULT_PROVIDER, validate_provider, validate_task_id
from tracker.tasks.pagination import chunked
from tracker.tasks.queries import rows_by_task_id
from tracker.tasks.views import Registration, TaskView
from tracker.webhooks.endpoints import TaskSubscription, subscribe_tasks
from tracker.webhooks.guard import AddressPolicy, Resolver, VettedURL, system_resolver

__all__ = ["MAX_METADATA_BYTES", "NewTask", "register", "register_tasks", "unstorable_text"]

# Metadata is the caller's, stored and returned with the task in every listing and webhook: a
# cap keeps a page of tasks (and a delivery) a sane size. 16 KiB of compact UTF-8 JSON.
MAX_METADATA_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class NewTask:
    """One task ID to register, with the caller's metadata and webhook URL for it."""

    task_id: object
    metadata: object = None
    # A VettedURL was checked (DNS included) before the transaction: see webhooks.vetting.
    webhook_url: str | VettedURL | None = None


def register(
    session: Session,
    task_ids: Sequence[object],
    *,
    first_poll_delay_s: float,
    now: datetime | None = None,
    provider: str = DEFAULT_PROVIDER,
    metadata: object = None,
    webhook_url: str | VettedURL | None = None,
    policy: AddressPolicy | None = None,
    resolve: Resolver = system_resolver,
) -> list[Registration]:
    """Start tracking `task_ids`, all with the same metadata and webhook; see `register_tasks`."""
    return register_tasks(
        session,
        [NewTask(task_id, metadata, webhook_url) for task_id in task_ids],
        now=now,
        first_poll_delay_s=first_poll_delay_s,
        provider=provider,
        policy=policy,
        resolve=resolve,
    )


def register_tasks(
    session: Session,
    items: Sequence[NewTask],
    *,
    first_poll_delay_s: float,
    now: datetime | None = None,
    provider: str = DEFAULT_PROVIDER,
    policy: AddressPolicy | None = None,
    resolve: Resolver = system_resolver,
) -> list[Registration]:
    """Start tracking every item; all of them or, if any is refused, none.

    Registering an ID that is already tracked changes nothing (its metadata included) and
    reports `created=False`, but a webhook URL it does not send to yet is added. The result
    follows the order of `items`, without repeats: an ID given twice in one batch is
    registered with its first metadata, the repeat changing nothing, as a second registration
    would not. A webhook URL has one endpoint, which signs for every task sent to it: each
    item names it, and a URL that had none gets one whose secret is returned beside its tasks.
    `policy` (where webhooks may go) is required when any item has a webhook URL.
    """
    validate_provider(provider)
    if not items:
        raise InvalidTaskId("no task ID given")
    metadata_by_id: dict[str, dict[str, Any]] = {}
    urls: dict[str | VettedURL, list[str]] = {}
    for position, item in enumerate(items, start=1):
        task_id = validate_task_id(item.task_id, position=position)
        metadata_by_id.setdefault(task_id, _checked_metadata(item.metadata, task_id))
        if item.webhook_url is not None:
            urls.setdefault(item.webhook_url, []).append(task_id)
    if urls and policy is None:
        raise ValueError("a webhook URL was given without the policy that checks it")
    now = now or database_now(session)
    ordered = list(metadata_by_id)
    created = _insert_new(session, provider, ordered, metadata_by_id, now, first_poll_delay_s)
    subscribed: dict[str, TaskSubscription] = {}
    for url, task_ids in urls.items():
        assert policy is not None
        subscription = subscribe_tasks(
            session, task_ids, url, now=now, policy=policy, provider=provider, resolve=resolve
        )
        subscribed.update(dict.fromkeys(task_ids, subscription))
    stored = rows_by_task_id(session, provider, ordered)
    registrations = []
    for task_id in ordered:
        found = subscribed.get(task_id)
        registrations.append(
            Registration(
                task=TaskView.of(stored[task_id]),
                created=task_id in created,
                webhook_added=found is not None and task_id in found.task_ids,
                webhook_secret=None if found is None else found.secret,
                webhook_endpoint_id=None if found is None else found.endpoint_id,
            )
        )
    return registrations


def _insert_new(
    session: Session,
    provider: str,
    task_ids: list[str],
    metadata_by_id: dict[str, dict[str, Any]],
    now: datetime,
    first_poll_delay_s: float,
) -> set[str]:
    """Insert the IDs not tracked yet (a unique constraint decides, not a prior read)."""
    rows = [
        {
            "provider": provider,
            "task_id": task_id,
            "status": TaskStatus.REGISTERED.value,
            "result_urls": [],
            "details": {},
            "task_metadata": metadata_by_id[task_id],
            "created_at": now,
            "updated_at": now,
            "poll_count": 0,
            "error_count": 0,
            "consecutive_errors": 0,
        }
        for task_id in task_ids
    ]
    created: set[str] = set()
    first_poll_at = now + timedelta(seconds=first_poll_delay_s)
    for chunk in chunked(rows, 500):
        statement = (
            insert_for(session, TrackedTask)
            .values(chunk)
            .on_conflict_do_nothing(index_elements=["provider", "task_id"])
            .returning(TrackedTask.id, TrackedTask.task_id)
        )
        inserted = session.execute(statement).all()
        if inserted:
            session.execute(
                insert(ScheduledPoll),
                [
                    {"task_pk": row.id, "provider": provider, "next_poll_at": first_poll_at}
                    for row in inserted
                ],
            )
        created.update(row.task_id for row in inserted)
    return created


def _checked_metadata(metadata: object, task_id: str) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidMetadata(
            f"metadata of task {task_id!r} must be a JSON object, got {type(metadata).__name__}"
        )
    problem = unstorable_text(metadata)
    if problem is not None:
        raise InvalidMetadata(f"metadata of task {task_id!r} contains {problem}")
    size = _metadata_size(metadata, task_id)
    if size > MAX_METADATA_BYTES:
        raise InvalidMetadata(
            f"metadata of task {task_id!r} is {size} bytes of JSON; the limit is "
            f"{MAX_METADATA_BYTES} (16 KiB)"
        )
    return metadata


def unstorable_text(metadata: object) -> str | None:
    """What in `metadata` (keys and strings, at any depth) no database can store as JSON text:
    a NUL character (PostgreSQL's JSONB refuses it) or half of a surrogate pair (not Unicode)."""
    pending = [metadata]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            if "\x00" in value:
                return "a NUL character (\\u0000), which cannot be stored"
            if any("\ud800" <= char <= "\udfff" for char in value):
                return "an unpaired surrogate (\\ud800-\\udfff), which is not valid Unicode"
    return None


def _metadata_size(metadata: dict[str, Any], task_id: str) -> int:
    """Bytes of `metadata` as compact UTF-8 JSON: as the API returns it inside a task."""
    try:
        text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise InvalidMetadata(f"metadata of task {task_id!r} is not JSON: {error}") from None
    return len(text.encode("utf-8", errors="surrogatepass"))
