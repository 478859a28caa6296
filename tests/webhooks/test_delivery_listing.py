"""Listing deliveries as the dashboard filters them (endpoint, event type, when written), and
the hourly counts by status of its overview chart; on SQLite and PostgreSQL.

Deliveries are written by real transitions (tasks untracked, so `task.cancelled` goes out),
never sent: no receiver is needed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import WebhookDelivery
from tracker.errors import InvalidInput
from tracker.states import DeliveryStatus
from tracker.tasks import register, untrack
from tracker.webhooks import deliveries, endpoints
from tracker.webhooks.delivery_stats import outcomes_by_hour
from tracker.webhooks.guard import AddressPolicy

LOOPBACK = AddressPolicy.from_setting("127.0.0.0/8")


def _endpoint(url: str, hook: str, *events: str) -> int:
    with db.session_scope(url) as session:
        created = endpoints.add_endpoint(session, hook, events=events, policy=LOOPBACK)
    return created.endpoint.id


def _cancel(url: str, *task_ids: str) -> None:
    with db.session_scope(url) as session:
        register.register(session, list(task_ids), now=utc_now(), first_poll_delay_s=600)
        for task_id in task_ids:
            untrack.untrack(session, task_id)


def _listed(url: str, **filters: object) -> list[tuple[str | None, int]]:
    with db.read_scope(url) as session:
        page = deliveries.page_deliveries(session, **filters)  # type: ignore[arg-type]
    return sorted((view.task_id, view.endpoint_id) for view in page.deliveries)


def test_deliveries_filter_by_endpoint_event_and_time(database_url: str) -> None:
    first = _endpoint(database_url, "http://127.0.0.1:9/first", "task.cancelled")
    second = _endpoint(database_url, "http://127.0.0.1:9/second", "task.cancelled")
    _cancel(database_url, "a", "b")
    assert _listed(database_url, endpoint_id=first) == [("a", first), ("b", first)]
    assert _listed(database_url, endpoint_id=second, event_type="task.cancelled") == [
        ("a", second),
        ("b", second),
    ]
    assert _listed(database_url, event_type="task.completed") == []
    assert _listed(database_url, task_id="a", provider="tensorslab") == [
        ("a", first),
        ("a", second),
    ]
    assert _listed(database_url, task_id="a", provider="tensorslab-image") == []
    later = utc_now() + timedelta(hours=1)
    assert _listed(database_url, created_since=later) == []
    assert len(_listed(database_url, created_before=later)) == 4
    assert _listed(database_url, created_before=datetime(2000, 1, 1, tzinfo=UTC)) == []


def test_an_unknown_event_type_is_refused(database_url: str) -> None:
    with db.read_scope(database_url) as session, pytest.raises(InvalidInput, match=r"task\.done"):
        deliveries.page_deliveries(session, event_type="task.done")


def test_outcomes_by_hour_counts_each_hour_of_the_day_by_status(database_url: str) -> None:
    hook = _endpoint(database_url, "http://127.0.0.1:9/hook", "task.cancelled")
    _cancel(database_url, "now-1", "now-2", "old-1")
    now = utc_now()
    with db.session_scope(database_url) as session:
        session.execute(  # one delivered three hours ago, one failed two days ago (out of range)
            update(WebhookDelivery)
            .where(WebhookDelivery.id == 1)
            .values(status=DeliveryStatus.DELIVERED, created_at=now - timedelta(hours=3))
        )
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == 3)
            .values(status=DeliveryStatus.FAILED, created_at=now - timedelta(days=2))
        )
    with db.read_scope(database_url) as session:
        hours = outcomes_by_hour(session, now=now)
    assert len(hours) == 24
    assert hours[-1].hour == now.replace(minute=0, second=0, microsecond=0)
    assert hours[-1].counts[DeliveryStatus.PENDING] == 1
    assert hours[-4].counts[DeliveryStatus.DELIVERED] == 1
    assert sum(hour.total for hour in hours) == 2
    assert sum(hour.counts[DeliveryStatus.FAILED] for hour in hours) == 0
    assert hook == 1
