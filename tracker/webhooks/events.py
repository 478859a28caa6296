"""Webhook event types and payloads: pure functions from a transition to the exact JSON body.

Every transition is a `task.status_changed` event; a transition into a terminal status is also
`task.<status>` (`task.completed`, `task.failed`, `task.not_found`, `task.expired`,
`task.cancelled`). The body is `{"type", "timestamp", "data"}`, serialized once and stored, so
every retry sends, and signs, the same bytes.

`webhook.test` is about no task: `tracker webhooks test ID` sends it to that one endpoint only,
whatever its events, so it is not something an endpoint subscribes to (`parse_events` refuses
it) and no transition ever produces it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tracker.states import TERMINAL_STATUSES, TaskStatus

__all__ = [
    "ALL_EVENTS",
    "DEFAULT_EVENTS",
    "EVENT_TYPES",
    "PER_TASK_EVENTS",
    "TEST_EVENT",
    "events_for_transition",
    "parse_events",
    "payload_body",
    "probe_payload_body",
]

STATUS_CHANGED = "task.status_changed"
TERMINAL_EVENTS = tuple(f"task.{status.value}" for status in TaskStatus if status.is_terminal)
ALL_EVENTS: tuple[str, ...] = (*TERMINAL_EVENTS, STATUS_CHANGED)
DEFAULT_EVENTS: tuple[str, ...] = ("task.completed", "task.failed")
PER_TASK_EVENTS: tuple[str, ...] = TERMINAL_EVENTS  # a per-task URL hears how its task ended
TEST_EVENT = "webhook.test"  # sent on request to one endpoint; never subscribed to
EVENT_TYPES: tuple[str, ...] = (*ALL_EVENTS, TEST_EVENT)  # every type a receiver may see


def parse_events(values: Iterable[str]) -> tuple[str, ...]:
    """Validate event names (comma-separated values allowed); empty means the defaults."""
    names: list[str] = []
    for value in values:
        names.extend(part.strip() for part in value.split(",") if part.strip())
    if not names:
        return DEFAULT_EVENTS
    if TEST_EVENT in names:
        raise ValueError(
            f"{TEST_EVENT} needs no subscription: `tracker webhooks test ID` sends it to that "
            "endpoint whatever its events"
        )
    unknown = [name for name in names if name not in ALL_EVENTS]
    if unknown:
        raise ValueError(
            f"unknown event {', '.join(map(repr, unknown))}; valid events: {', '.join(ALL_EVENTS)}"
        )
    return tuple(dict.fromkeys(names))


def events_for_transition(new_status: TaskStatus) -> tuple[str, ...]:
    if new_status in TERMINAL_STATUSES:
        return (f"task.{new_status.value}", STATUS_CHANGED)
    return (STATUS_CHANGED,)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def payload_body(
    *,
    event_type: str,
    occurred_at: datetime,
    task_id: str,
    provider: str,
    old_status: TaskStatus,
    new_status: TaskStatus,
    result_urls: Sequence[str],
    upstream_message: str | None,
    last_error: str | None,
    details: Mapping[str, Any],
    metadata: Mapping[str, Any],
    registered_at: datetime,
    completed_at: datetime | None,
) -> str:
    """The JSON body of one event, compact and stable."""
    payload = {
        "type": event_type,
        "timestamp": _iso(occurred_at),
        "data": {
            "task_id": task_id,
            "provider": provider,
            "old_status": old_status.value,
            "new_status": new_status.value,
            "result_urls": list(result_urls),
            "upstream_message": upstream_message,
            "error": last_error,
            "details": dict(details),
            "metadata": dict(metadata),
            "registered_at": _iso(registered_at),
            "completed_at": _iso(completed_at),
        },
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def probe_payload_body(*, occurred_at: datetime, endpoint_id: int, url: str) -> str:
    """The JSON body of a `webhook.test` event for one endpoint."""
    payload = {
        "type": TEST_EVENT,
        "timestamp": _iso(occurred_at),
        "data": {
            "webhook_id": endpoint_id,
            "url": url,
            "message": "a test event from tracker: this endpoint receives and verifies webhooks",
        },
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
