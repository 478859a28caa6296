"""How the CLI shows tasks and transitions: rich tables for people, JSON for machines."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from tracker.states import TaskStatus
from tracker.tasks.views import TaskView, TransitionView
from tracker.upstream.names import DEFAULT_PROVIDER

__all__ = ["STATUS_STYLES", "history_table", "status_text", "task_table", "tasks_table", "to_json"]

STATUS_STYLES: dict[TaskStatus, str] = {
    TaskStatus.REGISTERED: "dim",
    TaskStatus.PENDING: "yellow",
    TaskStatus.PROCESSING: "cyan",
    TaskStatus.UPLOADING: "blue",
    TaskStatus.COMPLETED: "bold green",
    TaskStatus.FAILED: "bold red",
    TaskStatus.NOT_FOUND: "magenta",
    TaskStatus.EXPIRED: "magenta",
    TaskStatus.CANCELLED: "dim",
}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def to_json(value: Any) -> str:
    """Views (dataclasses), lists of them, enums and datetimes as indented JSON."""
    return json.dumps(_plain(value), indent=2, ensure_ascii=False)


def status_text(status: TaskStatus) -> Text:
    return Text(status.value, style=STATUS_STYLES[status])


def _when(moment: datetime | None, *, now: datetime | None = None) -> str:
    if moment is None:
        return "-"
    now = now or datetime.now(UTC)
    seconds = (moment - now).total_seconds()
    moment = moment.astimezone(UTC)
    same_day = moment.date() == now.astimezone(UTC).date()
    stamp = moment.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")
    ago = abs(seconds)
    if ago < 120:
        span = f"{ago:.0f}s"
    else:
        span = f"{ago / 60:.0f}m" if ago < 7200 else f"{ago / 3600:.0f}h"
    return f"{stamp} ({'in ' + span if seconds > 0 else span + ' ago'})"


def tasks_table(
    tasks: Iterable[TaskView], *, title: str | None = None, with_provider: bool | None = None
) -> Table:
    """One row per task. A `provider` column appears when a task is not a video task
    (`tensorslab`): one ID may be a task of each provider. `with_provider` decides it for
    tables that must match (the pages of one listing); None: these tasks decide."""
    tasks = list(tasks)
    if with_provider is None:
        with_provider = any(task.provider != DEFAULT_PROVIDER for task in tasks)
    table = Table(title=title, header_style="bold")
    table.add_column("task id", overflow="fold")
    if with_provider:
        table.add_column("provider", no_wrap=True)
    for column in ("status", "polls", "updated", "result / message"):
        table.add_column(column, overflow="fold")
    for task in tasks:
        provider = (Text(task.provider),) if with_provider else ()
        table.add_row(
            Text(task.task_id),
            *provider,
            status_text(task.status),
            str(task.poll_count),
            _when(task.updated_at),
            Text(_outcome(task)),
        )
    return table


def _outcome(task: TaskView) -> str:
    if task.result_urls:
        return "\n".join(task.result_urls)
    return task.upstream_message or task.last_error or ""


def task_table(task: TaskView) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, str | Text]] = [
        ("task id", task.task_id),
        ("provider", task.provider),
        ("status", status_text(task.status)),
        ("result urls", "\n".join(task.result_urls) or "-"),
        ("upstream message", task.upstream_message or "-"),
        ("last error", task.last_error or "-"),
        ("registered", _when(task.created_at)),
        ("last polled", _when(task.last_polled_at)),
        ("next poll", _when(task.next_poll_at) if task.next_poll_at else "never (terminal)"),
        ("finished", _when(task.completed_at)),
        ("polls / errors", f"{task.poll_count} / {task.error_count}"),
    ]
    if task.paused is not None:
        pause = task.paused
        rows.append(
            (
                "paused",
                f"polling of {pause.provider} is paused ({pause.cause}): "
                f"{pause.reason}; no poll before {_when(pause.paused_until)}",
            )
        )
    if task.details:
        rows.append(("details", ", ".join(f"{k}={v}" for k, v in task.details.items())))
    if task.metadata:
        rows.append(("metadata", json.dumps(dict(task.metadata), ensure_ascii=False)))
    for name, value in rows:
        table.add_row(name, Text(value) if isinstance(value, str) else value)
    return table


def history_table(task_id: str, transitions: Iterable[TransitionView]) -> Table:
    table = Table(title=Text(f"history of {task_id}"), header_style="bold")
    for column in ("when (UTC)", "from", "to", "note"):
        table.add_column(column, overflow="fold")
    for item in transitions:
        table.add_row(
            item.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            status_text(item.from_status),
            status_text(item.to_status),
            Text(item.note or ""),
        )
    return table
