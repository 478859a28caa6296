"""Delivery control: a pending delivery made due now, `webhook.test` events, custom headers,
`redeliver --failed --endpoint`, and URLs whose host does not resolve right now.

Real pieces only: webhook receivers on loopback, SQLite and PostgreSQL, and the in-process
sending helpers of `test_delivery.py` (what a tick and a worker do).
"""

from __future__ import annotations

import json
import logging
import socket
from datetime import timedelta

import pytest
import requests
import standardwebhooks
from sqlalchemy import update

from tests.webhooks.test_delivery import _add_endpoint, _deliveries, _send_due, receiver
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import WebhookDelivery, WebhookEndpoint
from tracker.errors import (
    AlreadyDelivered,
    DeliveryHeld,
    EndpointDisabled,
    InvalidInput,
    InvalidWebhookHeader,
    UnknownDelivery,
    UnknownEndpoint,
)
from tracker.tasks import register, untrack
from tracker.testing.receiver import Answer, WebhookReceiver
from tracker.webhooks import deliveries, endpoints, probe, sender
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.guarded_http import guarded_session
from tracker.webhooks.vetting import vet_webhook_url

__all__ = ["receiver"]  # the fixture, shared with test_delivery.py

LOOPBACK = AddressPolicy.from_setting("127.0.0.0/8")
HOURS_AWAY = (36000.0,)  # a retry schedule whose first retry is ten hours off


def _cancel(url: str, *task_ids: str) -> None:
    """Transitions (to cancelled) without upstream: their deliveries are written at once."""
    with db.session_scope(url) as session:
        register.register(session, list(task_ids), now=utc_now(), first_poll_delay_s=600)
    for task_id in task_ids:
        with db.session_scope(url) as session:
            untrack.untrack(session, task_id, now=utc_now())


def _view(url: str, ref: str | int) -> deliveries.DeliveryView:
    with db.read_scope(url) as session:
        return deliveries.get_delivery(session, ref)


def _send_now(url: str, ref: str | int) -> deliveries.DeliveryView:
    with db.session_scope(url) as session:
        return deliveries.send_now(session, ref)


def _test_event(url: str, endpoint_id: int) -> deliveries.DeliveryView:
    with guarded_session(LOOPBACK) as http:
        return probe.send_test_event(
            endpoint_id,
            session_scope=lambda: db.session_scope(url),
            http=http,
            timeout_s=5,
            disable_after_s=86400,
        )


# --- redeliver --now ----------------------------------------------------------------------------


def test_now_sends_a_pending_delivery_whose_retry_was_hours_away(
    database_url: str, receiver: WebhookReceiver
) -> None:
    _add_endpoint(database_url, receiver, "task.cancelled")
    receiver.script(Answer(500), default=Answer(200))
    _cancel(database_url, "video-1")
    assert _send_due(database_url, schedule=HOURS_AWAY) == {"retry": 1}
    [waiting] = _deliveries(database_url)
    assert waiting.status == "pending" and waiting.next_attempt_at is not None
    assert waiting.next_attempt_at > utc_now() + timedelta(hours=7)
    assert _send_due(database_url, schedule=HOURS_AWAY) == {}  # nothing due for hours

    made_due = _send_now(database_url, waiting.message_id)  # the msg_ form

    assert made_due.next_attempt_at is not None and made_due.next_attempt_at <= utc_now()
    assert _send_due(database_url, schedule=HOURS_AWAY) == {"delivered": 1}
    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == waiting.message_id
    assert second.verified
    sent = _view(database_url, waiting.id)
    assert sent.status == "delivered" and sent.attempt_count == 2  # the same round of retries
    assert [a.status_code for a in sent.attempts] == [500, 200]


def test_now_refuses_a_delivered_delivery_and_changes_nothing(
    database_url: str, receiver: WebhookReceiver
) -> None:
    _add_endpoint(database_url, receiver, "task.cancelled")
    _cancel(database_url, "video-1")
    _send_due(database_url)
    [delivered] = _deliveries(database_url)
    assert delivered.status == "delivered"

    with pytest.raises(AlreadyDelivered, match="was delivered already") as refused:
        _send_now(database_url, str(delivered.id))

    assert "redeliver 1" in str(refused.value)
    assert _view(database_url, delivered.id) == delivered
    assert _send_due(database_url) == {}
    assert len(receiver.received) == 1


def test_now_leaves_a_held_delivery_held(database_url: str, receiver: WebhookReceiver) -> None:
    created = _add_endpoint(database_url, receiver, "task.cancelled")
    with db.session_scope(database_url) as session:
        endpoints.set_enabled(session, created.endpoint.id, False)
    _cancel(database_url, "video-1")
    [held] = _deliveries(database_url)

    with pytest.raises(DeliveryHeld, match=f"webhooks enable {created.endpoint.id}"):
        _send_now(database_url, held.id)

    assert _view(database_url, held.id) == held
    assert _send_due(database_url) == {}


def test_now_on_a_failed_delivery_sends_it_again_as_redeliver_does(
    database_url: str, receiver: WebhookReceiver
) -> None:
    _add_endpoint(database_url, receiver, "task.cancelled")
    receiver.script(Answer(500), default=Answer(200))
    _cancel(database_url, "video-1")
    assert _send_due(database_url, schedule=()) == {"dead": 1}

    again = _send_now(database_url, 1)

    assert again.status == "pending" and again.attempt_count == 0
    assert _send_due(database_url) == {"delivered": 1}


def test_a_delivery_is_found_by_number_or_message_id_and_nothing_else(database_url: str) -> None:
    with db.session_scope(database_url) as session:
        endpoints.add_endpoint(
            session, "http://127.0.0.1:9/h", events=["task.cancelled"], policy=LOOPBACK
        )
    _cancel(database_url, "video-1")
    [view] = _deliveries(database_url)
    assert _view(database_url, view.message_id).id == _view(database_url, "1").id == view.id
    # "\u0661" is an Arabic-Indic 1: str.isdigit() says yes, int() reads it, no delivery has it.
    for ref in ("2", "0", "-1", "msg_nope", "1; DROP TABLE x", "9" * 30, "\u0661"):
        with pytest.raises(UnknownDelivery, match="give its number or its msg_ ID"):
            _view(database_url, ref)


def test_redeliver_failed_since_can_be_limited_to_one_endpoint(
    database_url: str, receiver: WebhookReceiver
) -> None:
    one = _add_endpoint(database_url, receiver, "task.cancelled")
    with db.session_scope(database_url) as session:  # one endpoint per URL: another path
        other = endpoints.add_endpoint(
            session, receiver.url + "/other", events=["task.cancelled"], policy=LOOPBACK
        )
    receiver.script(*[Answer(500)] * 4, default=Answer(200))
    _cancel(database_url, "video-1", "video-2")
    assert _send_due(database_url, schedule=()) == {"dead": 4}
    since = utc_now() - timedelta(hours=1)

    with db.session_scope(database_url) as session:
        count = deliveries.redeliver_failed(session, since=since, endpoint_id=one.endpoint.id)
    assert count == 2
    views = _deliveries(database_url)
    assert {v.endpoint_id for v in views if v.status == "pending"} == {one.endpoint.id}
    assert {v.endpoint_id for v in views if v.status == "failed"} == {other.endpoint.id}
    with db.session_scope(database_url) as session, pytest.raises(UnknownEndpoint):
        deliveries.redeliver_failed(session, since=since, endpoint_id=999)


# --- webhook.test -------------------------------------------------------------------------------


def test_the_test_event_arrives_signed_with_the_endpoints_headers_and_shows_its_attempt(
    database_url: str, receiver: WebhookReceiver
) -> None:
    with WebhookReceiver() as bystander:
        _add_endpoint(database_url, bystander, "task.completed")  # asked nothing: hears nothing
        with db.session_scope(database_url) as session:
            created = endpoints.add_endpoint(
                session,
                receiver.url + "/hook",
                events=["task.failed"],
                headers=[("X-Env", "prod"), ("Authorization", "Bearer receiver-token")],
                policy=LOOPBACK,
            )
        assert created.secret is not None
        receiver.set_secrets([created.secret])

        view = _test_event(database_url, created.endpoint.id)

        [message] = receiver.wait_for(1)
        assert bystander.received == []
    payload = standardwebhooks.Webhook(created.secret).verify(message.body, message.headers)
    assert payload["type"] == "webhook.test"
    assert payload["data"]["webhook_id"] == created.endpoint.id
    assert message.headers["x-env"] == "prod"
    assert message.headers["authorization"] == "Bearer receiver-token"
    assert message.headers["content-type"] == "application/json"
    assert message.headers["webhook-id"] == view.message_id
    assert view.status == "delivered" and view.task_id is None and view.event_type == "webhook.test"
    [attempt] = view.attempts
    assert attempt.status_code == 200 and attempt.succeeded and attempt.duration_ms > 0
    assert _send_due(database_url) == {}  # no tick sends it again
    listed = {v.event_type for v in _deliveries(database_url)}
    assert listed == {"webhook.test"}


def test_the_test_event_is_signed_with_the_decrypted_secrets_and_logged_without_a_task(
    database_url: str, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    created = _add_endpoint(database_url, receiver)
    assert created.secret is not None
    with db.session_scope(database_url) as session:
        rotated = endpoints.rotate_secret(session, created.endpoint.id, overlap_s=3600)
        stored = session.get(WebhookEndpoint, created.endpoint.id)
        assert stored is not None and stored.secret.startswith("fernet:")  # encrypted at rest
    assert rotated.secret is not None

    with caplog.at_level(logging.INFO, logger="tracker.webhooks.sender"):
        view = _test_event(database_url, created.endpoint.id)

    [message] = receiver.wait_for(1)
    assert len(message.headers["webhook-signature"].split()) == 2  # the new and the old one
    for secret in (created.secret, rotated.secret):
        assert standardwebhooks.Webhook(secret).verify(message.body, message.headers)
    assert view.status == "delivered"
    [line] = [r.getMessage() for r in caplog.records if "webhook.test" in r.getMessage()]
    assert line.startswith(f"webhook webhook.test (delivery {view.id}, endpoint ")
    assert "task" not in line.split(":")[0]


def test_a_failing_test_event_is_recorded_failed_without_retries(
    database_url: str, receiver: WebhookReceiver
) -> None:
    created = _add_endpoint(database_url, receiver)
    receiver.script(Answer(503, body="down for maintenance"), default=Answer(200))

    view = _test_event(database_url, created.endpoint.id)

    assert view.status == "failed" and view.next_attempt_at is None
    [attempt] = view.attempts
    assert attempt.status_code == 503 and attempt.error == "HTTP 503"
    assert attempt.response_excerpt == "down for maintenance"
    assert _send_due(database_url) == {}
    assert len(receiver.received) == 1


def test_a_disabled_or_unknown_endpoint_gets_no_test_and_nothing_is_stored(
    database_url: str, receiver: WebhookReceiver
) -> None:
    created = _add_endpoint(database_url, receiver)
    with db.session_scope(database_url) as session:
        endpoints.set_enabled(session, created.endpoint.id, False)
    with pytest.raises(EndpointDisabled, match="is disabled"):
        _test_event(database_url, created.endpoint.id)
    with pytest.raises(UnknownEndpoint):
        _test_event(database_url, 999)
    assert _deliveries(database_url) == [] and receiver.received == []


def test_webhook_test_is_not_an_event_to_subscribe_to(database_url: str) -> None:
    with db.session_scope(database_url) as session, pytest.raises(InvalidInput, match="needs no"):
        endpoints.add_endpoint(
            session, "http://127.0.0.1:9/h", events=["webhook.test"], policy=LOOPBACK
        )


# --- custom headers -----------------------------------------------------------------------------


def test_headers_are_stored_replaced_and_never_shown(database_url: str) -> None:
    with db.session_scope(database_url) as session:
        created = endpoints.add_endpoint(
            session, "http://127.0.0.1:9/h", headers={"X-Env": "prod"}, policy=LOOPBACK
        )
    assert created.endpoint.header_names == ("X-Env",)
    assert "prod" not in json.dumps(repr(created.endpoint))
    with db.session_scope(database_url) as session:
        changed = endpoints.update_endpoint(
            session, created.endpoint.id, policy=LOOPBACK, headers={"X-Team": " video "}
        )
        row = session.get(WebhookEndpoint, created.endpoint.id)
        assert row is not None and row.headers == {"X-Team": "video"}
    assert changed.header_names == ("X-Team",)
    with db.session_scope(database_url) as session:
        endpoints.update_endpoint(session, created.endpoint.id, policy=LOOPBACK, headers={})
        assert endpoints.get_endpoint(session, created.endpoint.id).header_names == ()


def test_a_bad_header_is_refused_and_nothing_is_stored(database_url: str) -> None:
    with db.session_scope(database_url) as session, pytest.raises(InvalidWebhookHeader):
        endpoints.add_endpoint(
            session, "http://127.0.0.1:9/h", headers={"Webhook-Signature": "v1,x"}, policy=LOOPBACK
        )
    with db.session_scope(database_url) as session:
        assert endpoints.list_endpoints(session) == []
        created = endpoints.add_endpoint(
            session, "http://127.0.0.1:9/h", headers={"X-Env": "prod"}, policy=LOOPBACK
        )
    with db.session_scope(database_url) as session, pytest.raises(InvalidWebhookHeader):
        endpoints.update_endpoint(
            session, created.endpoint.id, policy=LOOPBACK, headers={"X-Env": "a\r\nHost: evil"}
        )
    with db.session_scope(database_url) as session:
        row = session.get(WebhookEndpoint, created.endpoint.id)
        assert row is not None and row.headers == {"X-Env": "prod"}


def test_stored_headers_never_replace_the_signature_headers(
    database_url: str, receiver: WebhookReceiver
) -> None:
    """Even a row written around the checks (an old version, a hand edit) cannot unsign."""
    created = _add_endpoint(database_url, receiver, "task.cancelled")
    with db.session_scope(database_url) as session:
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == created.endpoint.id)
            .values(headers={"Webhook-Id": "forged", "webhook-signature": "v1,forged"})
        )
    _cancel(database_url, "video-1")
    _send_due(database_url)
    [message] = receiver.wait_for(1)
    assert message.verified and message.headers["webhook-id"].startswith("msg_")


# --- URLs that do not resolve right now -----------------------------------------------------------


def test_an_unresolvable_host_is_accepted_and_its_attempts_fail_with_a_clear_error(
    database_url: str,
) -> None:
    url = "http://hooks.tracker-test.invalid/hook"  # RFC 6761: never resolves, no DNS query
    vetted = vet_webhook_url(url, AddressPolicy())
    assert vetted.warning is not None and "does not resolve right now" in vetted.warning
    with db.session_scope(database_url) as session:
        endpoints.add_endpoint(session, vetted, events=["task.cancelled"], policy=AddressPolicy())
    _cancel(database_url, "video-1")

    assert _send_due(database_url, policy=AddressPolicy(), schedule=(0.0,)) == {"retry": 1}
    assert _send_due(database_url, policy=AddressPolicy(), schedule=(0.0,)) == {"dead": 1}

    [view] = _deliveries(database_url)
    assert view.status == "failed" and len(view.attempts) == 2
    for attempt in view.attempts:
        assert attempt.status_code is None and attempt.error is not None
        assert attempt.error.startswith(
            "the host does not resolve: Failed to resolve 'hooks.tracker-test.invalid'"
        ), attempt.error


def test_a_name_that_starts_resolving_is_delivered_to(
    database_url: str, receiver: WebhookReceiver
) -> None:
    """The same endpoint, first with no DNS answer, then with one: each send resolves again."""
    answers: dict[str, list[str]] = {}

    def resolver(host: str, port: int) -> list[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    url = f"http://receiver.example:{receiver.port}/hook"
    with db.session_scope(database_url) as session:
        created = endpoints.add_endpoint(
            session,
            vet_webhook_url(url, LOOPBACK, resolve=resolver),
            events=["task.cancelled"],
            policy=LOOPBACK,
        )
    assert created.secret is not None
    receiver.set_secrets([created.secret])
    _cancel(database_url, "video-1")
    with guarded_session(LOOPBACK, resolve=resolver) as http:
        for expected in ({"retry": 1}, {"delivered": 1}):
            with db.session_scope(database_url) as session:
                session.execute(update(WebhookDelivery).values(next_attempt_at=utc_now()))
            _send_with(database_url, http, expected)
            answers["receiver.example"] = ["127.0.0.1"]
    [view] = _deliveries(database_url)
    assert [a.succeeded for a in view.attempts] == [False, True]
    assert receiver.wait_for(1)[0].verified


def _send_with(url: str, http: requests.Session, expected: dict[str, int]) -> None:
    with db.session_scope(url) as session:
        [claim] = sender.claim_due_deliveries(
            session, now=utc_now(), limit=10, lease_s=60, batch_size=10
        )
    assert (
        sender.send_batch(
            claim,
            session_scope=lambda: db.session_scope(url),
            http=http,
            timeout_s=5,
            schedule_s=(0.0,),
            disable_after_s=86400,
        )
        == expected
    )


def test_a_vetted_url_is_stored_without_another_lookup_inside_the_transaction(
    database_url: str,
) -> None:
    def no_lookup(host: str, port: int) -> list[str]:
        raise AssertionError(f"{host} was resolved inside the transaction")

    vetted = vet_webhook_url("http://hooks.tracker-test.invalid/x", AddressPolicy())
    per_task = vet_webhook_url("http://hooks.tracker-test.invalid/y", AddressPolicy())
    with db.session_scope(database_url) as session:
        endpoints.add_endpoint(session, vetted, policy=AddressPolicy(), resolve=no_lookup)
        [registered] = register.register(
            session,
            ["t1"],
            first_poll_delay_s=600,
            webhook_url=per_task,
            policy=AddressPolicy(),
            resolve=no_lookup,
        )
        endpoints.update_endpoint(session, 1, url=vetted, policy=AddressPolicy(), resolve=no_lookup)
    assert registered.webhook_secret is not None  # the per-task URL's endpoint was made
    assert registered.webhook_endpoint_id == 2


def test_refused_addresses_and_credentials_are_still_refused_when_added(
    database_url: str,
) -> None:
    for url in (
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "https://user:pass@hooks.tracker-test.invalid/x",
    ):
        with pytest.raises(InvalidInput):
            vet_webhook_url(url, AddressPolicy())
    with db.read_scope(database_url) as session:
        assert endpoints.list_endpoints(session) == []
