"""The `watch` use case: where a few given tasks stand right now, and since when.

A snapshot per call; the caller (`tracker watch`, the HTTP API) decides how often to take one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracker.db.models import Transition
from tracker.errors import InvalidTaskId, UnknownTask
from tracker.states import TaskStatus
from tracker.tasks.ids import DEFAULT_PROVIDER, validate_provider, validate_task_id
from tracker.tasks.pagination import chunked
from tracker.tasks.queries import rows_by_task_id
from tracker.tasks.views import TaskView

__all__ = ["WatchSnapshot", "WatchedTask", "watch_snapshot"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchedTask:
    task: TaskView
    status: TaskStatus
    in_status_since: datetime  # its latest transition, or its registration when it has none
    time_in_status_s: float  # from `in_status_since` to the snapshot's `taken_at`
    result_urls: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchSnapshot:
    taken_at: datetime
    tasks: tuple[WatchedTask, ...]  # in the order asked, without repeats
    all_terminal: bool


def watch_snapshot(
    session: Session,
    task_ids: Sequence[str],
    *,
    now: datetime,
    provider: str = DEFAULT_PROVIDER,
) -> WatchSnapshot:
    """The given tasks as they are now. `UnknownTask` for the first ID that is not tracked."""
    validate_provider(provider)
    if not task_ids:
        raise InvalidTaskId("no task ID given")
    ordered = list(
        dict.fromkeys(validate_task_id(raw, position=i + 1) for i, raw in enumerate(task_ids))
    )
    rows = rows_by_task_id(session, provider, ordered)
    changed_at: dict[int, datetime] = {}
    for task_id in ordered:
        if task_id not in rows:
            raise UnknownTask(task_id, provider)
    pks = [row.id for row in rows.values()]
    for chunk_pks in chunked(pks, 500):
        latest = session.execute(
            select(Transition.task_pk, func.max(Transition.occurred_at))
            .where(Transition.task_pk.in_(chunk_pks))
            .group_by(Transition.task_pk)
        )
        changed_at.update((pk, at) for pk, at in latest)
    watched = []
    for task_id in ordered:
        view = TaskView.of(rows[task_id])
        since = changed_at.get(rows[task_id].id, view.created_at)
        watched.append(
            WatchedTask(
                task=view,
                status=view.status,
                in_status_since=since,
                time_in_status_s=max(0.0, (now - since).total_seconds()),
                result_urls=view.result_urls,
            )
        )
    return WatchSnapshot(
        taken_at=now,
        tasks=tuple(watched),
        all_terminal=all(item.status.is_terminal for item in watched),
    )
