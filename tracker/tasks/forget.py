"""Forgetting one task on request: an ended task and its whole history are erased.

For people who must delete data when asked. A task still tracked is refused (untrack it
first), so nothing polls or writes it while it goes. Everything of it goes, deliveries not sent
yet included: that is what was asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from tracker.errors import TaskStillTracked
from tracker.states import TaskStatus
from tracker.tasks.erase import Erased, erase_tasks
from tracker.tasks.ids import DEFAULT_PROVIDER
from tracker.tasks.queries import get_row

__all__ = ["Forgotten", "forget"]


@dataclass(frozen=True, slots=True)
class Forgotten:
    task_id: str
    provider: str
    status: TaskStatus  # the status it had ended in
    erased: Erased


def forget(session: Session, task_id: str, *, provider: str = DEFAULT_PROVIDER) -> Forgotten:
    """Erase the ended task `task_id` with its history; `TaskStillTracked` while it is live."""
    row = get_row(session, task_id, provider)
    status = TaskStatus(row.status)
    if not status.is_terminal:
        raise TaskStillTracked(
            f"task {task_id!r} is still tracked ({status.value}): untrack it first "
            "(`tracker untrack`, or POST /v1/tasks/{task_id}/cancel), then forget it"
        )
    return Forgotten(task_id, provider, status, erase_tasks(session, [row.id]))
