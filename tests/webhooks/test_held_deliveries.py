"""Disabled endpoints keep their events: held (pending, no due time), sent when enabled.

Real pieces only: a webhook receiver on loopback, SQLite and PostgreSQL, and the in-process
sending helpers of `test_delivery.py`.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from tests.webhooks.test_delivery import _add_endpoint, _deliveries, _send_due, receiver
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import DeliveryAttempt, WebhookDelivery
from tracker.errors import DeliveryPending, EndpointURLTaken
from tracker.tasks import register, untrack
from tracker.testing.receiver import Answer, WebhookReceiver
from tracker.webhooks import deliveries, endpoints
from tracker.webhooks.guard import AddressPolicy

__all__ = ["receiver"]  # the fixture, shared with test_delivery.py

LOOPBACK = AddressPolicy.from_setting("127.0.0.0/8")


def _register(url: str, *task_ids: str) -> None:
    with db.session_scope(url) as session:
        register.register(session, list(task_ids), now=utc_now(), first_poll_delay_s=600)


def _cancel(url: str, task_id: str) -> None:
    """A transition (to cancelled) without upstream: its deliveries are written at once."""
    with db.session_scope(url) as session:
        untrack.untrack(session, task_id, now=utc_now())


def _set_enabled(url: str, endpoint_id: int, enabled: bool) -> None:
    with db.session_scope(url) as session:
        endpoints.set_enabled(session, endpoint_id, enabled, now=utc_now())


def _attempts(url: str) -> int:
    with db.read_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(DeliveryAttempt)) or 0)


def _assert_held(view: deliveries.DeliveryView) -> None:
    assert view.status == "pending" and view.next_attempt_at is None, view


def test_a_transition_while_disabled_is_held_and_enabling_sends_it_with_its_webhook_id(
    database_url: str, receiver: WebhookReceiver
) -> None:
    created = _add_endpoint(database_url, receiver, "task.cancelled")
    _register(database_url, "video-1")
    _set_enabled(database_url, created.endpoint.id, False)

    _cancel(database_url, "video-1")

    [held] = _deliveries(database_url)
    _assert_held(held)
    assert held.attempt_count == 0 and held.attempts == ()
    assert _send_due(database_url) == {}  # nothing is due: held rows are not claimed
    assert receiver.received == []
    with db.session_scope(database_url) as session, pytest.raises(DeliveryPending, match="held"):
        deliveries.redeliver(session, str(held.id), now=utc_now())

    _set_enabled(database_url, created.endpoint.id, True)
    [released] = _deliveries(database_url)
    assert released.status == "pending" and released.next_attempt_at is not None
    assert _send_due(database_url) == {"delivered": 1}

    [message] = receiver.wait_for(1)
    assert message.verified and message.payload["type"] == "task.cancelled"
    assert message.headers["webhook-id"] == held.message_id
    [sent] = _deliveries(database_url)
    assert sent.status == "delivered" and sent.attempt_count == 1


def test_update_endpoint_enabled_releases_held_deliveries_too(
    database_url: str, receiver: WebhookReceiver
) -> None:
    created = _add_endpoint(database_url, receiver, "task.cancelled")
    _register(database_url, "video-1", "video-2")
    with db.session_scope(database_url) as session:
        endpoints.update_endpoint(
            session, created.endpoint.id, enabled=False, policy=LOOPBACK, now=utc_now()
        )
    _cancel(database_url, "video-1")
    _cancel(database_url, "video-2")
    assert _send_due(database_url) == {} and receiver.received == []

    with db.session_scope(database_url) as session:
        endpoints.update_endpoint(
            session, created.endpoint.id, enabled=True, policy=LOOPBACK, now=utc_now()
        )
    assert _send_due(database_url) == {"delivered": 2}

    ids = {m.headers["webhook-id"] for m in receiver.wait_for(2)}
    assert ids == {d.message_id for d in _deliveries(database_url)}


def test_a_claimed_delivery_whose_endpoint_was_disabled_meanwhile_is_held_not_failed(
    database_url: str, receiver: WebhookReceiver
) -> None:
    created = _add_endpoint(database_url, receiver, "task.cancelled")
    _register(database_url, "video-1")
    _cancel(database_url, "video-1")  # written while enabled: due now
    [due] = _deliveries(database_url)
    assert due.next_attempt_at is not None
    _set_enabled(database_url, created.endpoint.id, False)

    assert _send_due(database_url) == {"held": 1}

    assert receiver.received == [] and _attempts(database_url) == 0
    [held] = _deliveries(database_url)
    _assert_held(held)
    assert held.attempt_count == 0 and held.last_error is None
    assert _send_due(database_url) == {}

    _set_enabled(database_url, created.endpoint.id, True)
    assert _send_due(database_url) == {"delivered": 1}
    [message] = receiver.wait_for(1)
    assert message.headers["webhook-id"] == due.message_id


def test_after_a_410_new_events_are_held_until_the_endpoint_is_enabled(
    database_url: str, receiver: WebhookReceiver
) -> None:
    created = _add_endpoint(database_url, receiver, "task.cancelled")
    _register(database_url, "video-1", "video-2")
    receiver.script(Answer(410))
    _cancel(database_url, "video-1")
    assert _send_due(database_url) == {"dead": 1}
    with db.read_scope(database_url) as session:
        gone = endpoints.get_endpoint(session, created.endpoint.id)
    assert not gone.enabled and gone.disabled_reason == "the receiver answered 410 Gone"

    _cancel(database_url, "video-2")  # while disabled by the 410

    newest, first = _deliveries(database_url)
    _assert_held(newest)
    assert first.status == "failed"  # the answer to this one was 410: it stays failed
    assert _send_due(database_url) == {}
    assert len(receiver.received) == 1

    _set_enabled(database_url, created.endpoint.id, True)
    assert _send_due(database_url) == {"delivered": 1}
    last = receiver.wait_for(2)[-1]
    assert last.payload["data"]["task_id"] == "video-2" and last.answered_status == 200
    assert last.headers["webhook-id"] == newest.message_id
    with db.read_scope(database_url) as session:
        assert endpoints.get_endpoint(session, created.endpoint.id).enabled


def test_a_retry_after_the_endpoint_was_disabled_for_failing_is_held_then_sent(
    database_url: str, receiver: WebhookReceiver
) -> None:
    created = _add_endpoint(database_url, receiver, "task.cancelled")
    _register(database_url, "video-1")
    receiver.script(default=Answer(500))
    _cancel(database_url, "video-1")

    deadline = time.monotonic() + 20
    while True:  # retries every 0.05 s until the endpoint is disabled for failing
        _send_due(database_url, schedule=(0.05,) * 10, disable_after_s=0.001)
        with db.read_scope(database_url) as session:
            view = endpoints.get_endpoint(session, created.endpoint.id)
        if not view.enabled:
            break
        assert time.monotonic() < deadline, "the endpoint was never disabled"
        time.sleep(0.05)
    assert view.disabled_reason is not None and "failed for" in view.disabled_reason
    tried = len(receiver.received)

    while True:  # the pending retry falls due and is held, not sent and not failed
        counts = _send_due(database_url, schedule=(0.05,) * 10)
        if counts.get("held"):
            break
        assert time.monotonic() < deadline, "the retry was never held"
        time.sleep(0.05)
    [held] = _deliveries(database_url)
    _assert_held(held)
    assert len(receiver.received) == tried and held.attempt_count == tried

    receiver.script(default=Answer(200))
    _set_enabled(database_url, created.endpoint.id, True)
    assert _send_due(database_url) == {"delivered": 1}
    assert receiver.wait_for(tried + 1)[-1].headers["webhook-id"] == held.message_id


def test_a_removed_endpoint_gets_nothing(database_url: str, receiver: WebhookReceiver) -> None:
    removed = _add_endpoint(database_url, receiver, "task.cancelled")
    _register(database_url, "video-1", "video-2")
    with db.session_scope(database_url) as session:
        endpoints.set_enabled(session, removed.endpoint.id, False, now=utc_now())
        endpoints.remove_endpoint(session, removed.endpoint.id, now=utc_now())

    _cancel(database_url, "video-1")

    assert _deliveries(database_url) == []
    assert _send_due(database_url) == {} and receiver.received == []


def test_a_held_delivery_whose_endpoint_is_removed_fails_without_an_attempt(
    database_url: str, receiver: WebhookReceiver
) -> None:
    created = _add_endpoint(database_url, receiver, "task.cancelled")
    _register(database_url, "video-1")
    _cancel(database_url, "video-1")
    with db.session_scope(database_url) as session:
        endpoints.remove_endpoint(session, created.endpoint.id, now=utc_now())

    assert _send_due(database_url) == {"endpoint_unavailable": 1}

    [refused] = _deliveries(database_url)
    assert refused.status == "failed" and refused.last_error == "the endpoint was removed"
    assert receiver.received == [] and _attempts(database_url) == 0
    with db.read_scope(database_url) as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


def test_removing_an_endpoint_fails_what_it_was_holding_at_once(
    database_url: str, receiver: WebhookReceiver
) -> None:
    created = _add_endpoint(database_url, receiver, "task.cancelled")
    _register(database_url, "video-1")
    _set_enabled(database_url, created.endpoint.id, False)
    _cancel(database_url, "video-1")
    [held] = _deliveries(database_url)
    _assert_held(held)

    with db.session_scope(database_url) as session:
        endpoints.remove_endpoint(session, created.endpoint.id)

    [failed] = _deliveries(database_url)
    assert (failed.status, failed.last_error) == ("failed", "the endpoint was removed")
    assert (
        _send_due(database_url) == {} and receiver.received == [] and _attempts(database_url) == 0
    )


def test_a_webhook_cannot_be_moved_onto_the_url_of_another_endpoint(
    database_url: str, receiver: WebhookReceiver
) -> None:
    _register(database_url, "video-1")
    with db.session_scope(database_url) as session:
        for path in ("/a", "/b"):
            endpoints.subscribe_tasks(session, ["video-1"], receiver.url + path, policy=LOOPBACK)
        second = endpoints.list_endpoints(session, include_per_task=True)[-1]
    with (
        pytest.raises(EndpointURLTaken, match=r"webhook endpoint \d+ already sends to"),
        db.session_scope(database_url) as s,
    ):
        endpoints.update_endpoint(s, second.id, url=receiver.url + "/a", policy=LOOPBACK)
    with db.read_scope(database_url) as session:
        urls = sorted(e.url for e in endpoints.list_endpoints(session, include_per_task=True))
    assert urls == [receiver.url + "/a", receiver.url + "/b"]
