"""Stopping tracking: a live task becomes `cancelled`, with its transition and webhooks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from tracker.db.clock import database_now
from tracker.db.models import ScheduledPoll, TrackedTask
from tracker.errors import TaskAlreadyEnded
from tracker.states import TaskStatus
from tracker.tasks.ids import DEFAULT_PROVIDER
from tracker.tasks.queries import get_row
from tracker.tasks.transitions import record_transition
from tracker.tasks.views import TaskView, Untracked

__all__ = ["untrack"]


def untrack(
    session: Session,
    task_id: str,
    *,
    now: datetime | None = None,
    provider: str = DEFAULT_PROVIDER,
) -> Untracked:
    """Stop tracking a task: it becomes `cancelled` and is never polled again.

    Untracking a cancelled task again changes nothing (`changed=False`); a task that already
    ended otherwise (completed, failed, expired, not found) raises `TaskAlreadyEnded`.
    """
    row = get_row(session, task_id, provider)
    now = now or database_now(session)
    # A worker may change a live status between our read and our write; then read again.
    for _ in range(3):
        previous = TaskStatus(row.status)
        if previous.is_terminal:
            break
        # The scheduled poll goes first (the order a batch's write locks them in): a worker
        # holding it finishes first, and then finds no lease to write under. The task's update
        # is guarded on the status we read, so a worker's result at the same moment wins or
        # loses cleanly.
        session.execute(
            delete(ScheduledPoll)
            .where(ScheduledPoll.task_pk == row.id)
            .execution_options(synchronize_session=False)
        )
        result = session.execute(
            update(TrackedTask)
            .where(TrackedTask.id == row.id, TrackedTask.status == previous.value)
            .values(status=TaskStatus.CANCELLED.value, completed_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            record_transition(
                session,
                task_pk=row.id,
                from_status=previous,
                to_status=TaskStatus.CANCELLED,
                at=now,
                note="untracked by the user",
            )
            session.refresh(row)
            return Untracked(TaskView.of(row), changed=True)
        session.refresh(row)
    status = TaskStatus(row.status)
    if status is TaskStatus.CANCELLED:
        return Untracked(TaskView.of(row), changed=False)
    raise TaskAlreadyEnded(f"task {task_id!r} is already {status.value}; nothing to stop")
