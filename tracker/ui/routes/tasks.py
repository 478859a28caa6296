"""Tasks: the filtered, paged table with counts, one task with its timeline, media, deliveries,
and the actions on it (untrack, erase).

Thin: each route parses, calls the task use cases (`queries`, `pauses`, `untrack`, `forget`,
`overdue`) in one transaction, and renders.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from tracker.api.deps import DatabaseDep, SettingsDep
from tracker.db.clock import database_now
from tracker.errors import InvalidInput
from tracker.ops import overdue
from tracker.states import TaskStatus
from tracker.tasks import forget, pauses, queries, untrack
from tracker.tasks.ids import DEFAULT_PROVIDER, validate_task_id
from tracker.tasks.views import TaskView, TransitionView, Untracked
from tracker.ui.charts import Segment, timeline_bar
from tracker.ui.formatting import duration, task_url
from tracker.ui.forms import parse_choice, parse_moment, parse_provider, time_value
from tracker.ui.pages import Form, PageRoute, form_of, redirect, render, signed_in
from tracker.ui.session import Session
from tracker.upstream.names import PROVIDERS
from tracker.webhooks import deliveries

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE_SIZE = 50
LIVE_REFRESH_S = 2


def _late(task: TaskView, now: datetime, after_s: float) -> bool:
    if task.next_poll_at is None or task.status.is_terminal:
        return False
    return (now - task.next_poll_at).total_seconds() > after_s


@router.get("/tasks")
def tasks_page(
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    _: Session = Depends(signed_in),
    status: str | None = None,
    provider: str | None = None,
    created_since: str | None = None,
    created_before: str | None = None,
    updated_since: str | None = None,
    updated_before: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
) -> Response:
    wanted = parse_choice(status, TaskStatus, name="status")
    filters: dict[str, Any] = {
        "status": wanted,
        "provider": parse_provider(provider),
        "created_since": parse_moment(created_since, name="registered from"),
        "created_before": parse_moment(created_before, name="registered before"),
        "updated_since": parse_moment(updated_since, name="updated from"),
        "updated_before": parse_moment(updated_before, name="updated before"),
        "search": q.strip() if q and q.strip() else None,
    }
    with database.read() as session:
        now = database_now(session)
        page = queries.page_tasks(
            session, **filters, limit=PAGE_SIZE, cursor=cursor.strip() if cursor else None
        )
        tasks = pauses.annotate(session, page.tasks, now=now)
        counts = queries.count_by_status(session)
        note = overdue.list_note(session, now=now, settings=settings)
    late_after_s = overdue.overdue_after_s(settings)
    params = {
        "status": wanted.value if wanted else "",
        "provider": filters["provider"] or "",
        "created_since": time_value(filters["created_since"]),
        "created_before": time_value(filters["created_before"]),
        "updated_since": time_value(filters["updated_since"]),
        "updated_before": time_value(filters["updated_before"]),
        "q": filters["search"] or "",
    }
    return render(
        request,
        "tasks.html",
        {
            "title": "Tasks",
            "tasks": tasks,
            "late": {(t.task_id, t.provider) for t in tasks if _late(t, now, late_after_s)},
            "counts": {s: counts.get(s, 0) for s in TaskStatus},
            "total": sum(counts.values()),
            "params": params,
            "next_cursor": page.next_cursor,
            "paged": cursor is not None,
            "statuses": list(TaskStatus),
            "providers": PROVIDERS,
            "overdue_note": note,
            "live": any(not t.status.is_terminal for t in tasks),
            "refresh_s": LIVE_REFRESH_S,
            "db_now": now,
        },
    )


def _segments(task: TaskView, history: list[TransitionView], now: datetime) -> list[Segment]:
    """Time in each state: from entering it to the next transition (or now, if still in it)."""
    entered = [(TaskStatus.REGISTERED, task.created_at)]
    entered += [(move.to_status, move.occurred_at) for move in history]
    segments = []
    for index, (status, since) in enumerate(entered):
        if index + 1 < len(entered):
            until = entered[index + 1][1]
        elif status.is_terminal:
            break
        else:
            until = now
        seconds = max(0.0, (until - since).total_seconds())
        segments.append(Segment(f"{status.value}: {duration(seconds)}", seconds, status.value))
    return segments


@router.get("/tasks/{task_id:path}")
def task_page(
    request: Request,
    task_id: str,
    database: DatabaseDep,
    settings: SettingsDep,
    _: Session = Depends(signed_in),
    provider: str = DEFAULT_PROVIDER,
) -> Response:
    validate_task_id(task_id)
    chosen = parse_provider(provider) or DEFAULT_PROVIDER
    with database.read() as session:
        now = database_now(session)
        [task] = pauses.annotate(
            session, [queries.get_task(session, task_id, provider=chosen)], now=now
        )
        history = queries.history(session, task_id, provider=chosen)
        sent = deliveries.page_deliveries(
            session, task_id=task_id, provider=chosen, limit=50, with_attempts=True
        )
        note = overdue.task_note(session, task, now=now, settings=settings)
    segments = _segments(task, history, now)
    rows = []
    entered_at = task.created_at
    for move in history:
        rows.append((move, move.occurred_at - entered_at))
        entered_at = move.occurred_at
    return render(
        request,
        "task.html",
        {
            "title": f"Task {task.task_id}",
            "task": task,
            "moves": rows,
            "segments": segments,
            "timeline": timeline_bar(segments, label=f"Time in each state of {task.task_id}"),
            "deliveries": sent.deliveries,
            "overdue_note": note,
            "live": not task.status.is_terminal,
            "refresh_s": LIVE_REFRESH_S,
            "db_now": now,
            "zero": timedelta(0),
        },
    )


def _task_of(form: Form) -> tuple[str, str]:
    task_id = form.fields.get("task_id", "")
    validate_task_id(task_id)
    return task_id, parse_provider(form.get("provider")) or DEFAULT_PROVIDER


@router.post("/actions/untrack")
async def untrack_task(request: Request) -> Response:
    form = await form_of(request)
    task_id, provider = _task_of(form)
    database = request.app.state.database

    def run() -> Untracked:
        with database.write() as session:
            return untrack.untrack(session, task_id, provider=provider)

    result = await run_in_threadpool(run)
    said = "is now cancelled: no more polls" if result.changed else "was already cancelled"
    return redirect(request, task_url(task_id, provider), notice=f"task {task_id} {said}")


@router.post("/actions/erase")
async def erase_task(request: Request) -> Response:
    form = await form_of(request)
    task_id, provider = _task_of(form)
    if form.get("confirm") != "erase":
        raise InvalidInput(
            "erasing is for good: tick the box that confirms it, then press Erase again"
        )
    database = request.app.state.database

    def run() -> forget.Forgotten:
        with database.write() as session:
            return forget.forget(session, task_id, provider=provider)

    await run_in_threadpool(run)
    notice = f"task {task_id} and its history were erased"
    return redirect(request, "/tasks", notice=notice)
