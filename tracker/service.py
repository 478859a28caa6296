"""The use cases shared by the CLI, the HTTP API and Python callers: register, query, untrack.

Each function takes a session inside the caller's transaction and returns plain frozen views,
so the edges only parse input, call one of these, and format the result.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tracker.errors import InvalidMetadata, InvalidTaskId, UnknownTask
from tracker.models import ProviderPauseRow, TrackedTask, Transition
from tracker.states import TaskStatus
from tracker.upstream import PROVIDERS
from tracker.webhooks.outbox import enqueue_deliveries

__all__ = [
    "MAX_TASK_ID_LENGTH",
    "ProviderPauseView",
    "Registration",
    "TaskView",
    "TransitionView",
    "Untracked",
    "count_by_status",
    "get_task",
    "history",
    "list_tasks",
    "provider_pauses",
    "register",
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


def register(
    session: Session,
    task_ids: Sequence[object],
    *,
    now: datetime,
    first_poll_delay_s: float,
    provider: str = DEFAULT_PROVIDER,
    metadata: object = None,
) -> list[Registration]:
    """Start tracking `task_ids`; all of them or, if any is invalid, none.

    Registering an ID that is already tracked changes nothing and reports `created=False`.
    The result follows the order of `task_ids`, without repeats.
    """
    validate_provider(provider)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InvalidMetadata(f"metadata must be a JSON object, got {type(metadata).__name__}")
    if not task_ids:
        raise InvalidTaskId("no task ID given")
    ordered = list(
        dict.fromkeys(validate_task_id(raw, position=i + 1) for i, raw in enumerate(task_ids))
    )
    rows = [
        {
            "provider": provider,
            "task_id": task_id,
            "status": TaskStatus.REGISTERED.value,
            "result_urls": [],
            "details": {},
            "task_metadata": metadata,
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
    for chunk in _chunks(rows, 500):
        statement = _insert_ignoring_duplicates(session, chunk).returning(TrackedTask.task_id)
        created.update(session.scalars(statement))
    stored = _rows_by_task_id(session, provider, ordered)
    return [Registration(TaskView.of(stored[task_id]), task_id in created) for task_id in ordered]


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> Any:
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return (
        module.insert(TrackedTask)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["provider", "task_id"])
    )


def _rows_by_task_id(
    session: Session, provider: str, task_ids: Sequence[str]
) -> dict[str, TrackedTask]:
    found: dict[str, TrackedTask] = {}
    for chunk in _chunks(list(task_ids), 500):
        query = select(TrackedTask).where(
            TrackedTask.provider == provider, TrackedTask.task_id.in_(chunk)
        )
        found.update((row.task_id, row) for row in session.scalars(query))
    return found


def _chunks(items: list[_T], size: int) -> Iterable[list[_T]]:
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
    query = select(TrackedTask).order_by(TrackedTask.created_at.desc(), TrackedTask.id.desc())
    if status is not None:
        query = query.where(TrackedTask.status == status.value)
    if provider is not None:
        query = query.where(TrackedTask.provider == provider)
    return [TaskView.of(row) for row in session.scalars(query.limit(limit))]


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
