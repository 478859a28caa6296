"""Reading tracked tasks: one task, its history, pages of tasks, counts, provider pauses.

Each function takes a session inside the caller's transaction (a read scope is enough) and
returns frozen views (`views.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import String, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from tracker.db.models import TrackedTask, Transition
from tracker.errors import InvalidInput, UnknownTask
from tracker.states import TaskStatus
from tracker.tasks.ids import DEFAULT_PROVIDER, validate_provider, validate_task_id
from tracker.tasks.pagination import (
    MAX_PAGE_SIZE,
    chunked,
    decode_cursor,
    encode_cursor,
    in_utc,
)
from tracker.tasks.pauses import active_pauses
from tracker.tasks.views import ProviderPauseView, TaskPage, TaskView, TransitionView

__all__ = [
    "count_by_provider",
    "count_by_status",
    "count_tasks",
    "get_row",
    "get_task",
    "history",
    "list_tasks",
    "page_tasks",
    "provider_pauses",
    "rows_by_task_id",
]

MAX_SEARCH_LENGTH = 200


def rows_by_task_id(
    session: Session, provider: str, task_ids: Sequence[str]
) -> dict[str, TrackedTask]:
    """The stored rows of `task_ids` (those that exist), by task ID."""
    found: dict[str, TrackedTask] = {}
    for chunk in chunked(list(task_ids), 500):
        query = select(TrackedTask).where(
            TrackedTask.provider == provider, TrackedTask.task_id.in_(chunk)
        )
        found.update((row.task_id, row) for row in session.scalars(query))
    return found


def get_row(session: Session, task_id: str, provider: str = DEFAULT_PROVIDER) -> TrackedTask:
    """The stored row of one task; `UnknownTask` when it is not tracked."""
    validate_provider(provider)
    validate_task_id(task_id)
    row = session.scalar(
        select(TrackedTask).where(TrackedTask.provider == provider, TrackedTask.task_id == task_id)
    )
    if row is None:
        others = session.scalars(
            select(TrackedTask.provider)
            .where(TrackedTask.task_id == task_id, TrackedTask.provider != provider)
            .order_by(TrackedTask.provider)
        )
        raise UnknownTask(task_id, provider, tracked_as=tuple(others))
    return row


def get_task(session: Session, task_id: str, *, provider: str = DEFAULT_PROVIDER) -> TaskView:
    return TaskView.of(get_row(session, task_id, provider))


def history(
    session: Session, task_id: str, *, provider: str = DEFAULT_PROVIDER
) -> list[TransitionView]:
    """Every status change of the task, oldest first."""
    row = get_row(session, task_id, provider)
    transitions = session.scalars(
        select(Transition).where(Transition.task_pk == row.id).order_by(Transition.id)
    )
    return [TransitionView.of(item) for item in transitions]


def list_tasks(
    session: Session,
    *,
    status: TaskStatus | None = None,
    provider: str | None = None,
    limit: int = 50,
) -> list[TaskView]:
    """The newest tracked tasks first, optionally only those in `status`."""
    if not 1 <= limit <= 10_000:
        raise InvalidInput(f"limit must be between 1 and 10000, got {limit}")
    return _task_rows_page(session, status=status, provider=provider, limit=limit)[0]


def page_tasks(
    session: Session,
    *,
    status: TaskStatus | None = None,
    provider: str | None = None,
    created_since: datetime | None = None,
    updated_since: datetime | None = None,
    created_before: datetime | None = None,
    updated_before: datetime | None = None,
    search: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> TaskPage:
    """One page of tracked tasks, newest first; `cursor` continues where the last page ended.

    Pages are keyed on (created_at, id), not offsets, so tasks registered meanwhile neither
    shift nor repeat what the next page holds. `search` keeps the tasks whose ID or metadata
    (as JSON text) contains it, case-sensitively; the `_before` bounds are exclusive.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
    if provider is not None:
        validate_provider(provider)
    if search is not None and not 1 <= len(search) <= MAX_SEARCH_LENGTH:
        raise InvalidInput(f"a search must be 1 to {MAX_SEARCH_LENGTH} characters")
    if search is not None and not search.isprintable():
        raise InvalidInput("a search must not contain control characters")
    tasks, last = _task_rows_page(
        session,
        status=status,
        provider=provider,
        created_since=in_utc(created_since),
        updated_since=in_utc(updated_since),
        created_before=in_utc(created_before),
        updated_before=in_utc(updated_before),
        search=search,
        limit=limit + 1,
        after=None if cursor is None else decode_cursor(cursor),
    )
    if len(tasks) <= limit:
        return TaskPage(tasks, None)
    return TaskPage(tasks[:limit], encode_cursor(*last[limit - 1]))


def _task_rows_page(
    session: Session,
    *,
    status: TaskStatus | None,
    provider: str | None,
    limit: int,
    created_since: datetime | None = None,
    updated_since: datetime | None = None,
    created_before: datetime | None = None,
    updated_before: datetime | None = None,
    search: str | None = None,
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
    if created_before is not None:
        query = query.where(TrackedTask.created_at < created_before)
    if updated_before is not None:
        query = query.where(TrackedTask.updated_at < updated_before)
    if search is not None:
        query = query.where(
            or_(
                TrackedTask.task_id.contains(search, autoescape=True),
                cast(TrackedTask.task_metadata, String).contains(search, autoescape=True),
            )
        )
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


def count_tasks(
    session: Session, *, status: TaskStatus | None = None, provider: str | None = None
) -> int:
    """How many tracked tasks match the filters of `page_tasks` (the "of 5,002" of a page)."""
    query = select(func.count()).select_from(TrackedTask)
    if status is not None:
        query = query.where(TrackedTask.status == status.value)
    if provider is not None:
        validate_provider(provider)
        query = query.where(TrackedTask.provider == provider)
    return int(session.scalar(query) or 0)


def count_by_provider(session: Session, *, status: TaskStatus | None = None) -> dict[str, int]:
    """How many tracked tasks (in `status`, if given) each provider that has any holds."""
    query = select(TrackedTask.provider, func.count()).group_by(TrackedTask.provider)
    if status is not None:
        query = query.where(TrackedTask.status == status.value)
    return {provider: count for provider, count in session.execute(query).all()}


def count_by_status(session: Session) -> dict[TaskStatus, int]:
    rows = session.execute(
        select(TrackedTask.status, func.count()).group_by(TrackedTask.status)
    ).all()
    return {TaskStatus(status): count for status, count in rows}


def provider_pauses(session: Session, *, now: datetime) -> list[ProviderPauseView]:
    """Providers whose polling is paused right now, and why (`pauses.active_pauses`)."""
    return active_pauses(session, now=now)
