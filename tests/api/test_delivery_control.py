"""Delivery control over HTTP: custom headers, `POST /v1/webhooks/{id}/test`, redelivering a
pending delivery now, both delivery ID forms, and webhook URLs that do not resolve right now."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import standardwebhooks
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.api.test_routes import _error, api, client, token
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import WebhookDelivery
from tracker.testing.receiver import Answer, WebhookReceiver

__all__ = ["api", "client", "token"]  # the fixtures, shared with test_routes.py

UNRESOLVABLE = "http://hooks.tracker-test.invalid/hook"  # RFC 6761: never resolves


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def _add(client: TestClient, receiver: WebhookReceiver, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/webhooks", json={"url": receiver.url + "/hook", **body})
    assert response.status_code == 201, response.text
    created = dict(response.json())
    receiver.set_secrets([created["secret"]])
    return created


def test_a_webhook_test_arrives_signed_with_its_headers_and_returns_the_attempt(
    client: TestClient, receiver: WebhookReceiver
) -> None:
    created = _add(client, receiver, headers={"X-Env": "prod", "Authorization": "Bearer t-1"})
    assert created["webhook"]["header_names"] == ["Authorization", "X-Env"]
    assert "t-1" not in str(client.get(f"/v1/webhooks/{created['webhook']['id']}").json())

    response = client.post(f"/v1/webhooks/{created['webhook']['id']}/test")

    assert response.status_code == 200, response.text
    delivery = response.json()
    assert delivery["event_type"] == "webhook.test" and delivery["task_id"] is None
    assert delivery["status"] == "delivered"
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 200 and attempt["duration_ms"] > 0
    [message] = receiver.wait_for(1)
    payload = standardwebhooks.Webhook(created["secret"]).verify(message.body, message.headers)
    assert payload["type"] == "webhook.test"
    assert message.headers["x-env"] == "prod" and message.headers["authorization"] == "Bearer t-1"
    assert client.get(f"/v1/deliveries/{delivery['message_id']}").json()["id"] == delivery["id"]


def test_a_failing_test_is_reported_and_a_disabled_webhook_is_a_conflict(
    client: TestClient, receiver: WebhookReceiver
) -> None:
    webhook_id = _add(client, receiver)["webhook"]["id"]
    receiver.script(Answer(500, body="boom"))
    failed = client.post(f"/v1/webhooks/{webhook_id}/test").json()
    assert failed["status"] == "failed" and failed["attempts"][0]["error"] == "HTTP 500"

    client.patch(f"/v1/webhooks/{webhook_id}", json={"enabled": False})
    conflict = client.post(f"/v1/webhooks/{webhook_id}/test")
    assert conflict.status_code == 409 and "is disabled" in _error(conflict)["message"]
    assert client.post("/v1/webhooks/99/test").status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {"webhook-signature": "v1,x"},
        {"Host": "evil.example"},
        {"content-type": "text/plain"},
        {"X-Env": "prod\r\nX-Injected: 1"},
        {"Bad Name": "x"},
        {"X-Env": "a", "x-env": "b"},
    ],
)
def test_a_bad_header_gets_422_and_nothing_changes(
    client: TestClient, receiver: WebhookReceiver, headers: dict[str, str]
) -> None:
    refused = client.post("/v1/webhooks", json={"url": receiver.url, "headers": headers})
    assert refused.status_code == 422 and _error(refused)["code"] == "invalid_input"
    assert client.get("/v1/webhooks").json() == {"webhooks": []}
    webhook_id = _add(client, receiver, headers={"X-Env": "prod"})["webhook"]["id"]
    refused = client.patch(f"/v1/webhooks/{webhook_id}", json={"headers": headers})
    assert refused.status_code == 422
    assert client.get(f"/v1/webhooks/{webhook_id}").json()["header_names"] == ["X-Env"]


def test_patch_replaces_the_headers(client: TestClient, receiver: WebhookReceiver) -> None:
    webhook_id = _add(client, receiver, headers={"X-Env": "prod"})["webhook"]["id"]
    changed = client.patch(f"/v1/webhooks/{webhook_id}", json={"headers": {"X-Team": "v"}})
    assert changed.status_code == 200 and changed.json()["header_names"] == ["X-Team"]
    cleared = client.patch(f"/v1/webhooks/{webhook_id}", json={"headers": {}})
    assert cleared.json()["header_names"] == []


def test_adding_a_url_that_has_a_webhook_keeps_its_headers_with_a_warning(
    client: TestClient, receiver: WebhookReceiver
) -> None:
    webhook_id = _add(client, receiver, headers={"X-Env": "prod"})["webhook"]["id"]
    again = client.post(
        "/v1/webhooks", json={"url": receiver.url + "/hook", "headers": {"X-Env": "staging"}}
    )
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["created"] is False and body["secret"] is None
    assert body["webhook"]["id"] == webhook_id and body["webhook"]["header_names"] == ["X-Env"]
    assert "headers given were not applied" in body["warning"] and "staging" not in again.text
    same = client.post("/v1/webhooks", json={"url": receiver.url + "/hook"})
    assert same.status_code == 200 and same.json()["warning"] is None


def test_redeliver_makes_a_pending_delivery_due_and_now_true_refuses_a_delivered_one(
    client: TestClient, receiver: WebhookReceiver
) -> None:
    webhook_id = _add(client, receiver, events=["task.cancelled"])["webhook"]["id"]
    client.post("/v1/tasks", json={"task_id": "d1"})
    client.post("/v1/tasks/d1/cancel")
    later = utc_now().replace(year=utc_now().year + 1)
    with db.session_scope() as session:  # as if its next retry were far off
        session.execute(update(WebhookDelivery).values(next_attempt_at=later))

    due = client.post("/v1/deliveries/1/redeliver")
    assert due.status_code == 202 and due.json()["status"] == "pending"
    assert due.json()["next_attempt_at"] < later.isoformat()

    delivered = client.post(f"/v1/webhooks/{webhook_id}/test").json()
    refused = client.post(f"/v1/deliveries/{delivered['message_id']}/redeliver?now=true")
    assert refused.status_code == 409 and "was delivered already" in _error(refused)["message"]
    assert client.get(f"/v1/deliveries/{delivered['id']}").json() == delivered
    again = client.post(f"/v1/deliveries/{delivered['id']}/redeliver")  # without now: again
    assert again.status_code == 202 and again.json()["status"] == "pending"

    client.patch(f"/v1/webhooks/{webhook_id}", json={"enabled": False})
    client.post("/v1/tasks", json={"task_id": "d2"})
    client.post("/v1/tasks/d2/cancel")
    [held] = client.get("/v1/deliveries", params={"task_id": "d2"}).json()["deliveries"]
    conflict = client.post(f"/v1/deliveries/{held['id']}/redeliver")
    assert conflict.status_code == 409 and "stays held" in _error(conflict)["message"]


def test_an_unresolvable_url_is_accepted_with_a_warning(client: TestClient) -> None:
    created = client.post("/v1/webhooks", json={"url": UNRESOLVABLE})
    assert created.status_code == 201
    assert "hooks.tracker-test.invalid does not resolve right now" in created.json()["warning"]
    webhook_id = created.json()["webhook"]["id"]
    changed = client.patch(f"/v1/webhooks/{webhook_id}", json={"url": UNRESOLVABLE + "/v2"})
    assert changed.status_code == 200 and "does not resolve" in changed.json()["warning"]
    assert client.get(f"/v1/webhooks/{webhook_id}").json()["warning"] is None

    registered = client.post(
        "/v1/tasks",
        json={"tasks": [{"task_id": "t1", "webhook_url": UNRESOLVABLE}, {"task_id": "t2"}]},
    )
    assert registered.status_code == 201
    first, second = registered.json()["tasks"]
    assert "does not resolve right now" in first["webhook_warning"]
    assert first["webhook_secret"].startswith("whsec_") and second["webhook_warning"] is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://10.0.0.1/hook", "private address"),
        ("http://169.254.169.254/latest/meta-data", "link-local address"),
        ("https://user:pass@hooks.tracker-test.invalid/x", "user name or password"),
    ],
)
def test_refused_urls_are_still_refused(client: TestClient, url: str, says: str) -> None:
    refused = client.post("/v1/webhooks", json={"url": url})
    assert refused.status_code == 422 and says in _error(refused)["message"]
    refused = client.post("/v1/tasks", json={"task_id": "t1", "webhook_url": url})
    assert refused.status_code == 422 and says in _error(refused)["message"]
    assert client.get("/v1/webhooks?include_per_task=true").json() == {"webhooks": []}
    assert client.get("/v1/tasks").json()["tasks"] == []
