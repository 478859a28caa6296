"""What the task use cases return: frozen views of stored rows, the same for every edge.

The HTTP API's response models read these with pydantic's `from_attributes`; the CLI formats them;
the Python client returns them as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tracker.db.models import ProviderPauseRow, TrackedTask
from tracker.db.models import Transition as TransitionRow
from tracker.states import TaskStatus

__all__ = [
    "ProviderPauseView",
    "Registration",
    "TaskPage",
    "TaskView",
    "TransitionView",
    "Untracked",
]


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
    # Its provider's pause, while the task is live and polling is paused (`pauses.annotate`).
    paused: ProviderPauseView | None = None

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

    @classmethod
    def of(cls, row: TransitionRow) -> TransitionView:
        return cls(
            from_status=TaskStatus(row.from_status),
            to_status=TaskStatus(row.to_status),
            occurred_at=row.occurred_at,
            note=row.note,
            upstream_payload=row.upstream_payload,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """One task of a registration: new or already tracked, and what happened to its webhook."""

    task: TaskView
    created: bool  # False: it was already tracked; its status and metadata are as they were
    webhook_added: bool = False  # it now also sends how it ends to the URL given with it
    webhook_secret: str | None = None  # that URL's new signing secret: returned this once
    webhook_endpoint_id: int | None = None  # the endpoint of the URL given with it: it signs


@dataclass(frozen=True, slots=True)
class Untracked:
    task: TaskView
    changed: bool  # False: it was already cancelled


@dataclass(frozen=True, slots=True)
class ProviderPauseView:
    """A provider's pause: no poll before `paused_until`; then (unless `cause` is
    rate_limited) one probe poll at a time until an answer lifts it."""

    provider: str
    paused_until: datetime
    reason: str
    cause: str = "no_credits"  # a PauseCause value
    started_at: datetime | None = None

    @classmethod
    def of(cls, row: ProviderPauseRow) -> ProviderPauseView:
        return cls(row.provider, row.paused_until, row.reason, row.cause, row.started_at)


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[TaskView]
    next_cursor: str | None  # pass it back to get the next page; None on the last one
