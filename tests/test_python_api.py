"""`from tracker import Tracker`: the Python API tells the same story as the CLI and HTTP."""

from __future__ import annotations

import pytest

from tests.conftest import Configure
from tracker import Tracker
from tracker.errors import InvalidInput, InvalidMetadata, InvalidWebhookURL, UnknownTask
from tracker.states import TaskStatus


@pytest.fixture
def tracker(database_url: str, configure: Configure) -> Tracker:
    configure(TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
    return Tracker(database_url=database_url)


def test_register_get_history_and_untrack(tracker: Tracker) -> None:
    first = tracker.register("vid-1", metadata={"order": 3}, webhook_url="http://127.0.0.1:9/h")
    assert [r.created for r in first.tasks] == [True]
    assert first.webhook_secret is not None and first.webhook_secret.startswith("whsec_")
    again = tracker.register(["vid-1", "vid-2"])
    assert [(r.task.task_id, r.created) for r in again.tasks] == [("vid-1", False), ("vid-2", True)]
    shared = tracker.register("vid-3", webhook_url="http://127.0.0.1:9/h")  # the same URL
    assert first.webhook_id is not None
    assert shared.webhook_secret is None and shared.webhook_id == first.webhook_id

    task = tracker.get("vid-1")
    assert task.status is TaskStatus.REGISTERED and dict(task.metadata) == {"order": 3}
    assert tracker.untrack("vid-1").changed is True
    [move] = tracker.history("vid-1")
    assert (move.from_status, move.to_status) == (TaskStatus.REGISTERED, TaskStatus.CANCELLED)
    [delivery] = tracker.deliveries(task_id="vid-1")
    assert (delivery.event_type, delivery.status) == ("task.cancelled", "pending")
    assert tracker.delivery(delivery.message_id).id == delivery.id


def test_list_pages_with_a_cursor(tracker: Tracker) -> None:
    for n in range(5):
        tracker.register(f"t{n}")
    first = tracker.list(limit=3)
    assert [t.task_id for t in first.tasks] == ["t4", "t3", "t2"]
    rest = tracker.list(limit=3, cursor=first.next_cursor)
    assert [t.task_id for t in rest.tasks] == ["t1", "t0"] and rest.next_cursor is None
    assert tracker.list(status="cancelled").tasks == []


def test_webhooks_from_python(tracker: Tracker) -> None:
    created = tracker.add_webhook("http://127.0.0.1:9/all", events=["task.completed"])
    assert created.secret is not None and created.secret.startswith("whsec_")
    assert [w.url for w in tracker.webhooks()] == ["http://127.0.0.1:9/all"]
    changed = tracker.update_webhook(created.endpoint.id, enabled=False)
    assert changed.enabled is False
    rotated = tracker.rotate_webhook_secret(created.endpoint.id, overlap_s=10)
    assert rotated.secret != created.secret
    tracker.remove_webhook(created.endpoint.id)
    assert tracker.webhooks() == []


def test_errors_are_trackers_own_and_store_nothing(tracker: Tracker) -> None:
    with pytest.raises(UnknownTask):
        tracker.get("nope")
    with pytest.raises(InvalidMetadata):
        tracker.register("x", metadata=[1])  # type: ignore[arg-type]
    with pytest.raises(InvalidWebhookURL):
        tracker.register("x", webhook_url="http://10.0.0.1/h")
    with pytest.raises(InvalidInput):
        tracker.register(["ok", "not ok"])
    assert tracker.list().tasks == []
