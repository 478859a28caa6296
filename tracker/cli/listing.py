"""Pages of tasks for `tracker list`: a page as long as --limit, and every page for --all.

The API's pages hold at most `MAX_PAGE_SIZE` tasks; the CLI's --limit may ask for more, so one
CLI page is read as several API pages (keyset cursors, `queries.page_tasks`), each in a short
read transaction of its own. No SQL here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from tracker import db
from tracker.db.clock import database_now
from tracker.states import TaskStatus
from tracker.tasks import pauses, queries
from tracker.tasks.pagination import MAX_PAGE_SIZE
from tracker.tasks.views import TaskPage, TaskView

__all__ = ["every_page", "read_tasks"]


def _page(
    status: TaskStatus | None, provider: str | None, limit: int, cursor: str | None
) -> TaskPage:
    """One page, its live tasks of a paused provider carrying the pause."""
    with db.read_scope() as session:
        page = queries.page_tasks(
            session, status=status, provider=provider, limit=limit, cursor=cursor
        )
        tasks = pauses.annotate(session, page.tasks, now=database_now(session))
        return dataclasses.replace(page, tasks=tasks)


def read_tasks(
    *, status: TaskStatus | None, provider: str | None = None, limit: int, cursor: str | None
) -> tuple[list[TaskView], str | None]:
    """Up to `limit` tasks after `cursor`, newest first, and the cursor of what follows (None
    when nothing does). A cursor that tracker did not write is `InvalidInput`."""
    tasks: list[TaskView] = []
    while True:
        page = _page(status, provider, min(MAX_PAGE_SIZE, limit - len(tasks)), cursor)
        tasks += page.tasks
        cursor = page.next_cursor
        if cursor is None or len(tasks) >= limit:
            return tasks, cursor


def every_page(
    *, status: TaskStatus | None, provider: str | None = None, cursor: str | None
) -> Iterator[list[TaskView]]:
    """Every task after `cursor` (all of them when None), a page at a time."""
    while True:
        page = _page(status, provider, MAX_PAGE_SIZE, cursor)
        yield page.tasks
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
