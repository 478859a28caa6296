"""The use cases shared by the CLI, the HTTP API and Python callers: register, query, untrack.

Each function takes a session inside the caller's transaction and returns plain frozen views,
so the edges only parse input, call one of these, and format the result.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tracker.errors import InvalidInput, InvalidMetadata, InvalidTaskId, UnknownTask
from tracker.models import ProviderPauseRow, TrackedTask, Transition
from tracker.states import TaskStatus
from tracker.upstream import PROVIDERS
from tracker.webhooks.outbox import enqueue_deliveries

__all__ = [
    "MAX_PAGE_SIZE",
    "MAX_TASK_ID_LENGTH",
    "NewTask",
    "ProviderPauseView",
    "Registration",
    "TaskPage",
    "TaskView",
    "TransitionView",
    "Untracked",
    "chunked",
    "count_by_status",
    "get_task",
    "history",
    "list_tasks",
    "page_tasks",
    "provider_pauses",
    "register",
    "register_tasks",
    "rows_by_task_id",
    "untrack",
    "validate_task_id",
]

MAX_TASK_ID_LENGTH = 256
_T = TypeVar("_T")
DEFAULT_PROVIDER = "tensorslab"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskView:
    """A tracked task as callers see it."""

    task_id: str
    provider: str
    status: TaskStatus
    result_urls: tuple[str, ...]
    upstream_message: str | None
    last_error: str | None
    details: Mapping[str, Any]
    metadata: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    last_polled_at: datetime | None
    next_poll_at: datetime | None
    poll_count: int
    error_count: int

    @classmethod
    def of(cls, row: TrackedTask) -> TaskView:
        return cls(
            task_id=row.task_id,
            provider=row.provider,
            status=TaskStatus(row.status),
            result_urls=tuple(row.result_urls or ()),
            upstream_message=row.upstream_message,
            last_error=row.last_error,
            details=dict(row.details or {}),
            metadata=dict(row.task_metadata or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
            completed_at=row.completed_at,
            last_polled_at=row.last_polled_at,
            next_poll_at=row.next_poll_at,
            poll_count=row.poll_count,
            error_count=row.error_count,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TransitionView:
    from_status: TaskStatus
    to_status: TaskStatus
    occurred_at: datetime
    note: str | None
    upstream_payload: Mapping[str, Any] | None = field(default=None)


@dataclass(frozen=True, slots=True)
class Registration:
    task: TaskView
    created: bool  # False: it was already tracked, nothing changed


@dataclass(frozen=True, slots=True)
class Untracked:
    task: TaskView
    changed: bool  # False: it was already in a terminal status


@dataclass(frozen=True, slots=True)
class ProviderPauseView:
    provider: str
    paused_until: datetime
    reason: str


def validate_task_id(raw: object, *, position: int | None = None) -> str:
    """`raw` if it is a usable task ID, else `InvalidTaskId` saying what is wrong with it."""
    where = f"task ID #{position}" if position is not None else "task ID"
    if not isinstance(raw, str):
        raise InvalidTaskId(f"{where} must be a string, got {type(raw).__name__}")
    if not raw:
        raise InvalidTaskId(f"{where} is empty")
    if len(raw) > MAX_TASK_ID_LENGTH:
        raise InvalidTaskId(
            f"{where} is {len(raw)} characters long; the limit is {MAX_TASK_ID_LENGTH}"
        )
    for index, char in enumerate(raw):
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Zs"):
            kind = "whitespace" if char.isspace() else "a control character"
            raise InvalidTaskId(
                f"{where} {_shown(raw)} contains {kind} ({char!r}) at position {index}"
            )
    return raw


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


def validate_provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise InvalidTaskId(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
    return provider


@dataclass(frozen=True, slots=True)
class NewTask:
    """One task ID to register, with the caller's metadata for it."""

    task_id: object
    metadata: object = None


def register(
    session: Session,
    task_ids: Sequence[object],
    *,
    now: datetime,
    first_poll_delay_s: float,
    provider: str = DEFAULT_PROVIDER,
    metadata: object = None,
) -> list[Registration]:
    """Start tracking `task_ids`, all with the same `metadata`; see `register_tasks`."""
    return register_tasks(
        session,
        [NewTask(task_id, metadata) for task_id in task_ids],
        now=now,
        first_poll_delay_s=first_poll_delay_s,
        provider=provider,
    )


def register_tasks(
    session: Session,
    items: Sequence[NewTask],
    *,
    now: datetime,
    first_poll_delay_s: float,
    provider: str = DEFAULT_PROVIDER,
) -> list[Registration]:
    """Start tracking every item; all of them or, if any is invalid, none.

    Registering an ID that is already tracked changes nothing (its metadata included) and
    reports `created=False`. The result follows the order of `items`, without repeats; an ID
    given twice with different metadata is refused.
    """
    validate_provider(provider)
    if not items:
        raise InvalidTaskId("no task ID given")
    metadata_by_id: dict[str, dict[str, Any]] = {}
    for position, item in enumerate(items, start=1):
        task_id = validate_task_id(item.task_id, position=position)
        metadata = _checked_metadata(item.metadata, task_id)
        if metadata_by_id.setdefault(task_id, metadata) != metadata:
            raise InvalidMetadata(f"task ID {task_id!r} is given twice with different metadata")
    ordered = list(metadata_by_id)
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
            "next_poll_at": now + timedelta(seconds=first_poll_delay_s),
            "poll_count": 0,
            "error_count": 0,
            "consecutive_errors": 0,
        }
        for task_id in ordered
    ]
    created: set[str] = set()
    for chunk in chunked(rows, 500):
        statement = _insert_ignoring_duplicates(session, chunk).returning(TrackedTask.task_id)
        created.update(session.scalars(statement))
    stored = rows_by_task_id(session, provider, ordered)
    return [Registration(TaskView.of(stored[task_id]), task_id in created) for task_id in ordered]


def _checked_metadata(metadata: object, task_id: str) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidMetadata(
            f"metadata of task {task_id!r} must be a JSON object, got {type(metadata).__name__}"
        )
    return metadata


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> Any:
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return (
        module.insert(TrackedTask)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["provider", "task_id"])
    )


def rows_by_task_id(
    session: Session, provider: str, task_ids: Sequence[str]
) -> dict[str, TrackedTask]:
    found: dict[str, TrackedTask] = {}
    for chunk in chunked(list(task_ids), 500):
        query = select(TrackedTask).where(
            TrackedTask.provider == provider, TrackedTask.task_id.in_(chunk)
        )
        found.update((row.task_id, row) for row in session.scalars(query))
    return found


def chunked(items: list[_T], size: int) -> Iterable[list[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _get_row(session: Session, task_id: str, provider: str) -> TrackedTask:
    validate_task_id(task_id)
    row = session.scalar(
        select(TrackedTask).where(TrackedTask.provider == provider, TrackedTask.task_id == task_id)
    )
    if row is None:
        raise UnknownTask(task_id, provider)
    return row


def get_task(session: Session, task_id: str, *, provider: str = DEFAULT_PROVIDER) -> TaskView:
    return TaskView.of(_get_row(session, task_id, provider))


def history(
    session: Session, task_id: str, *, provider: str = DEFAULT_PROVIDER
) -> list[TransitionView]:
    """Every status change of the task, oldest first."""
    row = _get_row(session, task_id, provider)
    transitions = session.scalars(
        select(Transition).where(Transition.task_pk == row.id).order_by(Transition.id)
    )
    return [
        TransitionView(
            from_status=TaskStatus(item.from_status),
            to_status=TaskStatus(item.to_status),
            occurred_at=item.occurred_at,
            note=item.note,
            upstream_payload=item.upstream_payload,
        )
        for item in transitions
    ]


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[TaskView]
    next_cursor: str | None  # pass it back to get the next page; None on the last one


MAX_PAGE_SIZE = 1000


def list_tasks(
    session: Session,
    *,
    status: TaskStatus | None = None,
    provider: str | None = None,
    limit: int = 50,
) -> list[TaskView]:
    """The newest tracked tasks first, optionally only those in `status`."""
    if not 1 <= limit <= 10_000:
        raise ValueError(f"limit must be between 1 and 10000, got {limit}")
    return _task_rows_page(session, status=status, provider=provider, limit=limit)[0]


def page_tasks(
    session: Session,
    *,
    status: TaskStatus | None = None,
    provider: str | None = None,
    created_since: datetime | None = None,
    updated_since: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> TaskPage:
    """One page of tracked tasks, newest first; `cursor` continues where the last page ended.

    Pages are keyed on (created_at, id), not offsets, so tasks registered meanwhile neither
    shift nor repeat what the next page holds.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
    if provider is not None:
        validate_provider(provider)
    tasks, last = _task_rows_page(
        session,
        status=status,
        provider=provider,
        created_since=_in_utc(created_since, "created_since"),
        updated_since=_in_utc(updated_since, "updated_since"),
        limit=limit + 1,
        after=_decode_cursor(cursor) if cursor else None,
    )
    if len(tasks) <= limit:
        return TaskPage(tasks, None)
    return TaskPage(tasks[:limit], _encode_cursor(*last[limit - 1]))


def _task_rows_page(
    session: Session,
    *,
    status: TaskStatus | None,
    provider: str | None,
    limit: int,
    created_since: datetime | None = None,
    updated_since: datetime | None = None,
    after: tuple[datetime, int] | None = None,
) -> tuple[list[TaskView], list[tuple[datetime, int]]]:
    query = select(TrackedTask).order_by(TrackedTask.created_at.desc(), TrackedTask.id.desc())
    if status is not None:
        query = query.where(TrackedTask.status == status.value)
    if provider is not None:
        query = query.where(TrackedTask.provider == provider)
    if created_since is not None:
        query = query.where(TrackedTask.created_at >= created_since)
    if updated_since is not None:
        query = query.where(TrackedTask.updated_at >= updated_since)
    if after is not None:
        created_at, row_id = after
        query = query.where(
            or_(
                TrackedTask.created_at < created_at,
                and_(TrackedTask.created_at == created_at, TrackedTask.id < row_id),
            )
        )
    rows = list(session.scalars(query.limit(limit)))
    return [TaskView.of(row) for row in rows], [(row.created_at, row.id) for row in rows]


def _in_utc(moment: datetime | None, name: str) -> datetime | None:
    """`moment` in UTC; a time that does not exist in UTC (year 0 or 10000) is bad input."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{name} {moment.isoformat()} is out of range in UTC") from None


MAX_ROW_ID = 2**63 - 1


def _encode_cursor(created_at: datetime, row_id: int) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        moment, row_id = raw.split("|")
        created_at = datetime.fromisoformat(moment)
        # Cursors are written in UTC with a row ID in the BIGINT range; anything else is forged.
        if created_at.utcoffset() != timedelta(0) or not 0 < int(row_id) <= MAX_ROW_ID:
            raise ValueError("not a cursor this service wrote")
        return created_at, int(row_id)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInput(
            f"invalid cursor {cursor[:60]!r}: pass back the next_cursor of a previous page"
        ) from None


def count_by_status(session: Session) -> dict[TaskStatus, int]:
    rows = session.execute(
        select(TrackedTask.status, func.count()).group_by(TrackedTask.status)
    ).all()
    return {TaskStatus(status): count for status, count in rows}


def untrack(
    session: Session, task_id: str, *, now: datetime, provider: str = DEFAULT_PROVIDER
) -> Untracked:
    """Stop tracking a task: it becomes `cancelled` and is never polled again.

    A task already in a terminal status is left as it is (`changed=False`).
    """
    row = _get_row(session, task_id, provider)
    previous = TaskStatus(row.status)
    if previous.is_terminal:
        return Untracked(TaskView.of(row), changed=False)
    # Guarded on the status we read, so a worker writing a result at the same moment wins or
    # loses cleanly; clearing the lease makes that worker's write find nothing to update.
    result = session.execute(
        update(TrackedTask)
        .where(TrackedTask.id == row.id, TrackedTask.status == previous.value)
        .values(
            status=TaskStatus.CANCELLED.value,
            next_poll_at=None,
            lease_token=None,
            lease_expires_at=None,
            completed_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(row)
        return Untracked(TaskView.of(row), changed=False)
    session.execute(
        insert(Transition).values(
            task_pk=row.id,
            from_status=previous.value,
            to_status=TaskStatus.CANCELLED.value,
            occurred_at=now,
            upstream_payload=None,
            note="untracked by the user",
        )
    )
    enqueue_deliveries(
        session, task_pk=row.id, old_status=previous, new_status=TaskStatus.CANCELLED, at=now
    )
    session.refresh(row)
    return Untracked(TaskView.of(row), changed=True)


def provider_pauses(session: Session, *, now: datetime) -> list[ProviderPauseView]:
    """Providers whose polling is paused right now, and why."""
    rows = session.scalars(select(ProviderPauseRow).where(ProviderPauseRow.paused_until > now))
    return [ProviderPauseView(row.provider, row.paused_until, row.reason) for row in rows]
