"""The HTTP API through FastAPI's TestClient, on SQLite and PostgreSQL: every route, auth,
pagination, idempotent registration, and bad input that must get a clear 4xx and store nothing.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Configure
from tests.support import reschedule
from tracker import db, tokens
from tracker.api import create_app
from tracker.db import migrate
from tracker.db.clock import utc_now
from tracker.settings import Settings
from tracker.states import TaskStatus
from tracker.tasks import queries

RECEIVER_URL = "http://127.0.0.1:9/hooks"  # allowed by the test's settings; never called here


@pytest.fixture
def api(database_url: str, configure: Configure) -> Iterator[TestClient]:
    configure(
        TRACKER_DATABASE_URL=database_url,
        TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        TRACKER_API_MAX_BATCH=50,
        TRACKER_API_MAX_BODY_BYTES=65536,
    )
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def token(api: TestClient) -> str:
    with db.session_scope() as session:
        return tokens.create_token(session, "tests", now=utc_now()).secret


@pytest.fixture
def client(api: TestClient, token: str) -> TestClient:
    api.headers["Authorization"] = f"Bearer {token}"
    return api


def test_an_app_serves_exactly_the_database_of_the_settings_it_was_built_with(
    tmp_path: Path,
) -> None:
    apps = {}
    for name in ("first", "second"):
        url = f"sqlite:///{tmp_path / name}.db"
        migrate.upgrade(url)
        with db.session_scope(url) as session:
            secret = tokens.create_token(session, name).secret
        app = TestClient(create_app(Settings(database_url=url)))
        app.headers["Authorization"] = f"Bearer {secret}"
        apps[name] = app
    assert apps["first"].post("/v1/tasks", json={"task_id": "only-in-first"}).status_code == 201
    listed = {name: app.get("/v1/tasks").json()["tasks"] for name, app in apps.items()}
    assert [task["task_id"] for task in listed["first"]] == ["only-in-first"]
    assert listed["second"] == []


def _stored_task_ids() -> list[str]:
    with db.session_scope() as session:
        return sorted(task.task_id for task in queries.list_tasks(session, limit=10_000))


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["message"], body
    return dict(body["error"])


# --- auth --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer trk_not-a-real-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "unknown", "basic", "empty"],
)
def test_every_v1_route_refuses_a_request_without_a_valid_token(
    api: TestClient, headers: dict[str, str]
) -> None:
    routes = [
        ("GET", "/v1/tasks"),
        ("POST", "/v1/tasks"),
        ("GET", "/v1/tasks/abc"),
        ("GET", "/v1/tasks/abc/transitions"),
        ("DELETE", "/v1/tasks/abc"),
        ("POST", "/v1/tasks/abc/cancel"),
        ("POST", "/v1/providers/tensorslab/resume"),
        ("GET", "/v1/webhooks"),
        ("POST", "/v1/webhooks"),
        ("GET", "/v1/webhooks/1"),
        ("PATCH", "/v1/webhooks/1"),
        ("DELETE", "/v1/webhooks/1"),
        ("POST", "/v1/webhooks/1/rotate-secret"),
        ("POST", "/v1/webhooks/1/test"),
        ("GET", "/v1/deliveries"),
        ("GET", "/v1/deliveries/1"),
        ("POST", "/v1/deliveries/1/redeliver"),
    ]
    for method, path in routes:
        response = api.request(method, path, headers=headers, json={"task_id": "abc"})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert _error(response)["code"] == "unauthorized"
    assert _stored_task_ids() == []


def test_a_revoked_token_is_refused_from_then_on(api: TestClient, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get("/v1/tasks", headers=headers).status_code == 200
    with db.session_scope() as session:
        [view] = tokens.list_tokens(session)
        tokens.revoke_token(session, view.id, now=utc_now())

    response = api.get("/v1/tasks", headers=headers)
    assert response.status_code == 401
    assert "revoked" in _error(response)["message"]


def test_health_readiness_and_metrics_need_no_token(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"] == ready.json()["checks"]["broker"] == "ok"
    metrics = api.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")


# --- tasks -------------------------------------------------------------------------------


def test_registering_is_idempotent_201_then_200(client: TestClient) -> None:
    first = client.post("/v1/tasks", json={"task_id": "vid-1", "metadata": {"order": 7}})
    assert first.status_code == 201, first.text
    assert first.json()["created"] is True
    assert first.json()["task"]["status"] == "registered"
    assert first.json()["task"]["metadata"] == {"order": 7}

    again = client.post("/v1/tasks", json={"task_id": "vid-1", "metadata": {"order": 8}})
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["task"]["metadata"] == {"order": 7}  # nothing changed
    assert again.json()["task"]["created_at"] == first.json()["task"]["created_at"]


def test_a_batch_registers_new_and_reports_known_ids(client: TestClient) -> None:
    client.post("/v1/tasks", json={"task_id": "old"})
    response = client.post(
        "/v1/tasks",
        json={"tasks": [{"task_id": "old"}, {"task_id": "new", "metadata": {"k": "v"}}]},
    )
    assert response.status_code == 201
    items = response.json()["tasks"]
    assert [(i["task"]["task_id"], i["created"]) for i in items] == [
        ("old", False),
        ("new", True),
    ]
    assert items[1]["task"]["metadata"] == {"k": "v"}

    only_known = client.post("/v1/tasks", json={"tasks": [{"task_id": "old"}]})
    assert only_known.status_code == 200


def test_a_per_task_webhook_secret_is_shown_once(client: TestClient) -> None:
    first = client.post("/v1/tasks", json={"task_id": "hooked", "webhook_url": RECEIVER_URL})
    secret = first.json()["webhook_secret"]
    assert secret and secret.startswith("whsec_")

    again = client.post("/v1/tasks", json={"task_id": "hooked", "webhook_url": RECEIVER_URL})
    assert again.json()["webhook_secret"] is None
    listed = client.get("/v1/webhooks", params={"include_per_task": True})
    assert [(w["url"], w["all_tasks"], w["task_count"]) for w in listed.json()["webhooks"]] == [
        (RECEIVER_URL, False, 1)
    ]
    assert secret not in listed.text
    assert client.get("/v1/webhooks").json()["webhooks"] == []  # not one for every task


def test_registrations_with_one_url_share_one_endpoint_and_one_secret(
    client: TestClient,
) -> None:
    first = client.post("/v1/tasks", json={"task_id": "a", "webhook_url": RECEIVER_URL})
    endpoint_id = first.json()["webhook_id"]
    assert first.json()["webhook_secret"].startswith("whsec_")

    batch = client.post(
        "/v1/tasks",
        json={
            "tasks": [
                {"task_id": "a", "webhook_url": RECEIVER_URL},
                {"task_id": "b", "webhook_url": RECEIVER_URL},
            ]
        },
    )
    tasks = batch.json()["tasks"]
    assert [item["webhook_secret"] for item in tasks] == [None, None]  # no new secret
    assert [item["webhook_id"] for item in tasks] == [endpoint_id, endpoint_id]
    listed = client.get("/v1/webhooks", params={"include_per_task": True}).json()["webhooks"]
    assert [(w["id"], w["task_count"]) for w in listed] == [(endpoint_id, 2)]


def test_adding_a_url_twice_returns_its_one_endpoint(client: TestClient) -> None:
    first = client.post("/v1/webhooks", json={"url": RECEIVER_URL})
    assert first.status_code == 201 and first.json()["secret"].startswith("whsec_")

    again = client.post("/v1/webhooks", json={"url": RECEIVER_URL, "events": ["task.expired"]})
    assert again.status_code == 200
    body = again.json()
    assert body["created"] is False and body["secret"] is None
    assert body["webhook"]["id"] == first.json()["webhook"]["id"]
    assert body["webhook"]["events"] == ["task.completed", "task.failed", "task.expired"]
    assert len(client.get("/v1/webhooks").json()["webhooks"]) == 1


def test_adding_the_url_of_a_per_task_endpoint_makes_it_hear_every_task(
    client: TestClient,
) -> None:
    registered = client.post("/v1/tasks", json={"task_id": "a", "webhook_url": RECEIVER_URL})
    added = client.post("/v1/webhooks", json={"url": RECEIVER_URL})
    assert added.status_code == 200 and added.json()["secret"] is None
    webhook = added.json()["webhook"]
    assert webhook["id"] == registered.json()["webhook_id"]
    assert (webhook["all_tasks"], webhook["task_count"]) == (True, 0)
    moved = client.post("/v1/webhooks", json={"url": RECEIVER_URL + "/other"})
    taken = client.patch(
        f"/v1/webhooks/{moved.json()['webhook']['id']}", json={"url": RECEIVER_URL}
    )
    assert taken.status_code == 409
    assert f"webhook endpoint {webhook['id']} already sends to" in taken.json()["error"]["message"]


def test_get_a_task_its_transitions_and_untrack_it(client: TestClient) -> None:
    client.post("/v1/tasks", json={"task_id": "vid-9"})

    task = client.get("/v1/tasks/vid-9")
    assert task.status_code == 200
    assert task.json()["task_id"] == "vid-9"
    assert client.get("/v1/tasks/vid-9/transitions").json() == {
        "task_id": "vid-9",
        "transitions": [],
    }

    cancelled = client.post("/v1/tasks/vid-9/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["next_poll_at"] is None
    [transition] = client.get("/v1/tasks/vid-9/transitions").json()["transitions"]
    assert (transition["from_status"], transition["to_status"]) == ("registered", "cancelled")
    again = client.post("/v1/tasks/vid-9/cancel")  # cancelling again: unchanged
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_untracking_a_finished_task_is_a_conflict(client: TestClient) -> None:
    client.post("/v1/tasks", json={"task_id": "done"})
    with db.session_scope() as session:  # as if a worker had seen it complete
        from sqlalchemy import update

        from tracker.db.models import TrackedTask

        session.execute(update(TrackedTask).values(status=TaskStatus.COMPLETED.value))
        reschedule(session, None)
    response = client.post("/v1/tasks/done/cancel")
    assert response.status_code == 409
    assert "already completed" in _error(response)["message"]


def test_unknown_tasks_are_404(client: TestClient) -> None:
    for path in ("/v1/tasks/nope", "/v1/tasks/nope/transitions"):
        response = client.get(path)
        assert response.status_code == 404
        assert _error(response) == {
            "code": "not_found",
            "message": "no tracked tensorslab task with ID 'nope'",
            "details": [],
        }
    assert client.post("/v1/tasks/nope/cancel").status_code == 404
    assert client.delete("/v1/tasks/nope").status_code == 404


def test_listing_pages_through_every_task_newest_first(client: TestClient) -> None:
    ids = [f"page-{n:02d}" for n in range(23)]
    for task_id in ids:  # one request each, so created_at grows
        client.post("/v1/tasks", json={"task_id": task_id})

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/v1/tasks", params=params).json()
        seen += [task["task_id"] for task in body["tasks"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))


def test_listing_filters_by_status_and_time(client: TestClient) -> None:
    client.post("/v1/tasks", json={"task_id": "a"})
    client.post("/v1/tasks", json={"task_id": "b"})
    client.post("/v1/tasks/a/cancel")

    cancelled = client.get("/v1/tasks", params={"status": "cancelled"}).json()["tasks"]
    assert [task["task_id"] for task in cancelled] == ["a"]
    future = client.get("/v1/tasks", params={"created_since": "2999-01-01T00:00:00Z"})
    assert future.json() == {"tasks": [], "next_cursor": None}
    past = client.get("/v1/tasks", params={"updated_since": "2000-01-01T00:00:00+00:00"})
    assert {task["task_id"] for task in past.json()["tasks"]} == {"a", "b"}


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "finished"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"created_since": "yesterday"}, "created_since"),
        ({"created_since": "2026-01-01T00:00:00"}, "created_since"),  # no timezone
        ({"provider": "runway"}, None),
        ({"cursor": "not-a-cursor"}, None),
        ({"cursor": _cursor("2026-01-01T00:00:00+00:00|" + "9" * 30)}, None),  # the old form
        ({"cursor": "1764637616778009_" + "9" * 20}, None),  # past BIGINT
        ({"cursor": ""}, None),
        ({"updated_since": "0.5"}, "updated_since"),  # a number is not a date
        ({"updated_since": "1764637616"}, "updated_since"),  # nor are epoch seconds
        ({"updated_since": "2026-12-02"}, "updated_since"),  # a date alone
        ({"updated_since": "2026-12-02T10:00:00+1:00"}, "updated_since"),
        ({"updated_since": "2026-02-30T10:00:00Z"}, "updated_since"),  # no such day
        ({"updated_since": "2026-12-02T10:00:00+24:00"}, "updated_since"),
    ],
)
def test_bad_list_parameters_are_422_naming_the_problem(
    client: TestClient, params: dict[str, Any], field: str | None
) -> None:
    response = client.get("/v1/tasks", params=params)
    assert response.status_code == 422, response.text
    error = _error(response)
    if field is not None:
        assert [d["field"] for d in error["details"]] == [field]
    else:
        assert next(iter(params)) in error["message"] or "cursor" in error["message"]


def test_metadata_with_half_a_surrogate_pair_is_refused_and_nothing_stored(
    client: TestClient,
) -> None:
    body = b'{"task_id": "x", "metadata": {"k": "\\ud800"}}'  # valid JSON, not Unicode
    response = client.post("/v1/tasks", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "unpaired surrogate" in _error(response)["message"]
    assert client.get("/v1/tasks/x").status_code == 404


def test_a_time_without_a_timezone_is_refused_with_the_form_to_use(client: TestClient) -> None:
    response = client.get("/v1/tasks", params={"updated_since": "2026-12-02T10:00:00"})
    assert response.status_code == 422
    [detail] = _error(response)["details"]
    assert detail["field"] == "updated_since"
    assert "ISO 8601 with a timezone, e.g. 2026-12-02T10:00:00Z" in detail["message"]


@pytest.mark.parametrize(
    ("params", "found"),
    [
        ({"updated_since": "2026-11-30T10:00:00z"}, True),  # RFC 3339 allows lower case
        ({"updated_since": "2026-11-30t10:00:00.123456789+01:00"}, True),  # > 6 digits
        ({"created_since": "0001-01-01T00:00:00+05:00"}, True),  # before year 1 in UTC: all
        ({"updated_since": "9999-12-31T23:59:59-12:00"}, False),  # after 9999 in UTC: none
        ({"created_since": "2999-01-01T00:00:00Z"}, False),
    ],
)
def test_every_rfc3339_time_is_a_valid_bound(
    client: TestClient, params: dict[str, str], found: bool
) -> None:
    client.post("/v1/tasks", json={"task_id": "bound"})
    response = client.get("/v1/tasks", params=params)
    assert response.status_code == 200, response.text
    assert bool(response.json()["tasks"]) is found


def test_any_cursor_of_the_documented_form_is_a_position(client: TestClient) -> None:
    for task_id in ("c1", "c2"):
        client.post("/v1/tasks", json={"task_id": task_id})
    first = client.get("/v1/tasks", params={"limit": 1}).json()
    assert re.fullmatch(r"[0-9]+_[0-9]+", first["next_cursor"])
    rest = client.get("/v1/tasks", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [t["task_id"] for t in first["tasks"] + rest["tasks"]] == ["c2", "c1"]
    # A position the server did not hand out is still a position, even past every row ID.
    end = client.get("/v1/tasks", params={"cursor": "99999999999999999_" + "9" * 19})
    assert [t["task_id"] for t in end.json()["tasks"]] == ["c2", "c1"]
    start = client.get("/v1/tasks", params={"cursor": "0_0"})
    assert start.status_code == 200 and start.json()["tasks"] == []
    deliveries = client.get("/v1/deliveries", params={"cursor": "9" * 19})
    assert deliveries.status_code == 200, deliveries.text


# --- bad input: a clear 4xx, nothing stored ------------------------------------------------


BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("unknown field", {"task_id": "x", "colour": "red"}, 422, "colour"),
    ("unknown field in batch", {"tasks": [{"task_id": "x", "colour": 1}]}, 422, "tasks[0].colour"),
    ("wrong type", {"task_id": 12}, 422, "task_id"),
    ("empty list", {"tasks": []}, 422, "tasks"),
    ("empty id", {"task_id": ""}, 422, "task_id"),
    ("whitespace id", {"task_id": "a b"}, 422, "whitespace"),
    ("metadata not an object", {"task_id": "x", "metadata": [1, 2]}, 422, "JSON object"),
    ("metadata a string", {"task_id": "x", "metadata": "{}"}, 422, "JSON object"),
    ("NUL in metadata", {"task_id": "x", "metadata": {"k": ["a\x00"]}}, 422, "NUL character"),
    ("NUL in a metadata key", {"task_id": "x", "metadata": {"a\x00": 1}}, 422, "NUL character"),
    ("refused network", {"task_id": "x", "webhook_url": "http://10.1.2.3/h"}, 422, "private"),
    ("not a URL", {"task_id": "x", "webhook_url": "ftp://example.com"}, 422, "http"),
    ("too many ids", {"tasks": [{"task_id": f"t{n}"} for n in range(51)]}, 413, "limit is 50"),
    (
        "a batch with one bad id",
        {"tasks": [{"task_id": "good"}, {"task_id": "bad\nid"}]},
        422,
        "#2",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_bad_registrations_are_refused_and_store_nothing(
    client: TestClient, body: Any, status: int, says: str
) -> None:
    response = client.post("/v1/tasks", json=body)
    assert response.status_code == status, response.text
    error = _error(response)
    assert says in error["message"] + json.dumps(error["details"]), error
    assert _stored_task_ids() == []


def test_ten_thousand_ids_are_refused_by_size_or_count(client: TestClient) -> None:
    body = {"tasks": [{"task_id": f"task-{n:05d}"} for n in range(10_000)]}
    response = client.post("/v1/tasks", json=body)
    assert response.status_code == 413
    assert _stored_task_ids() == []


def test_a_ten_megabyte_body_is_refused_before_it_is_parsed(client: TestClient) -> None:
    body = b'{"task_id": "x", "metadata": {"blob": "' + b"a" * 10_000_000 + b'"}}'
    response = client.post("/v1/tasks", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "TRACKER_API_MAX_BODY_BYTES" in _error(response)["message"]
    assert _stored_task_ids() == []


def test_a_body_that_is_not_utf8_or_not_json_is_400(client: TestClient) -> None:
    latin1 = '{"task_id": "café"}'.encode("latin-1")
    response = client.post(
        "/v1/tasks", content=latin1, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_utf8"
    assert "position 16" in _error(response)["message"]

    response = client.post(
        "/v1/tasks", content=b'{"task_id": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_json"
    assert _stored_task_ids() == []


# --- webhooks and deliveries ---------------------------------------------------------------


def test_webhook_endpoints_are_created_listed_changed_and_removed(client: TestClient) -> None:
    created = client.post("/v1/webhooks", json={"url": RECEIVER_URL, "events": ["task.failed"]})
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    webhook = created.json()["webhook"]
    assert webhook["events"] == ["task.failed"] and webhook["enabled"] is True

    listed = client.get("/v1/webhooks")
    assert [w["id"] for w in listed.json()["webhooks"]] == [webhook["id"]]
    assert secret not in listed.text
    one = client.get(f"/v1/webhooks/{webhook['id']}")
    assert one.json()["url"] == RECEIVER_URL and secret not in one.text

    patched = client.patch(
        f"/v1/webhooks/{webhook['id']}",
        json={"enabled": False, "events": ["task.completed", "task.failed"]},
    )
    assert patched.status_code == 200
    assert patched.json()["enabled"] is False
    assert patched.json()["events"] == ["task.completed", "task.failed"]

    rotated = client.post(f"/v1/webhooks/{webhook['id']}/rotate-secret", params={"overlap_s": 60})
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != secret
    assert rotated.json()["webhook"]["rotating_until"] is not None

    assert client.delete(f"/v1/webhooks/{webhook['id']}").status_code == 204
    assert client.get("/v1/webhooks").json() == {"webhooks": []}
    assert client.get(f"/v1/webhooks/{webhook['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"url": "http://192.168.1.10/h"}, "private"),
        ({"url": RECEIVER_URL, "events": ["task.exploded"]}, "task.exploded"),
        ({"url": RECEIVER_URL, "secret": "mine"}, "secret"),
    ],
)
def test_bad_webhooks_are_refused(client: TestClient, body: dict[str, Any], says: str) -> None:
    response = client.post("/v1/webhooks", json=body)
    assert response.status_code == 422
    error = _error(response)
    assert says in error["message"] + json.dumps(error["details"])
    assert client.get("/v1/webhooks").json() == {"webhooks": []}


def test_deliveries_are_listed_with_attempts_and_redelivered(client: TestClient) -> None:
    client.post("/v1/webhooks", json={"url": RECEIVER_URL, "events": ["task.cancelled"]})
    for task_id in ("d1", "d2", "d3"):
        client.post("/v1/tasks", json={"task_id": task_id})
        client.post(f"/v1/tasks/{task_id}/cancel")  # writes one task.cancelled delivery each

    first = client.get("/v1/deliveries", params={"limit": 2}).json()
    assert [d["task_id"] for d in first["deliveries"]] == ["d3", "d2"]
    assert first["deliveries"][0]["attempts"] == []
    rest = client.get("/v1/deliveries", params={"limit": 2, "cursor": first["next_cursor"]})
    assert [d["task_id"] for d in rest.json()["deliveries"]] == ["d1"]
    assert rest.json()["next_cursor"] is None
    # Exactly `limit` left: that page is the last, with no cursor to an empty one.
    whole = client.get("/v1/deliveries", params={"limit": 3}).json()
    assert len(whole["deliveries"]) == 3 and whole["next_cursor"] is None
    by_task = client.get("/v1/deliveries", params={"task_id": "d2"}).json()["deliveries"]
    assert [d["event_type"] for d in by_task] == ["task.cancelled"]

    pending = by_task[0]
    due = client.post(f"/v1/deliveries/{pending['message_id']}/redeliver")  # due now: no change
    assert due.status_code == 202
    assert due.json()["id"] == pending["id"] and due.json()["status"] == "pending"
    assert client.get(f"/v1/deliveries/{pending['message_id']}").json()["id"] == pending["id"]
    assert client.get("/v1/deliveries/999999").status_code == 404
    assert client.get("/v1/deliveries/msg_0123").status_code == 404
    assert client.post("/v1/deliveries/999999/redeliver").status_code == 404
    for bad in ("0", "-1", "12a", "msg_", "9" * 20):
        assert client.get(f"/v1/deliveries/{bad}").status_code == 422, bad


def test_the_openapi_document_describes_every_route_with_auth(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    operations = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "patch", "delete")
    }
    # 17, webhook test, task cancel, provider resume, POST, GET, GET one of /v1/submissions
    assert len(operations) == 23
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation.get("summary"), (method, path)
            if path.startswith("/v1"):
                assert operation.get("security"), (method, path)
                assert "401" in operation["responses"], (method, path)
    assert api.get("/docs").status_code == 200


def test_metrics_count_tasks_and_how_late_the_most_overdue_poll_is(client: TestClient) -> None:
    from datetime import timedelta

    client.post("/v1/tasks", json={"tasks": [{"task_id": "m1"}, {"task_id": "m2"}]})
    client.post("/v1/tasks/m2/cancel")
    with db.session_scope() as session:  # m1's poll is an hour overdue, as if no worker ran
        reschedule(session, utc_now() - timedelta(hours=1), "m1")

    lines = client.get("/metrics").text.splitlines()
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if line and not line.startswith("#")
    }
    assert values['tracker_tasks{status="registered"}'] == 1
    assert values['tracker_tasks{status="cancelled"}'] == 1
    assert values["tracker_due_tasks"] == 1
    assert values["tracker_due_lag_seconds"] >= 3600
    assert values['tracker_transitions_total{to_status="cancelled"}'] == 1


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"task_id": "x"}', "application/x-www-form-urlencoded"),  # curl -d's default
        (b'[{"task_id": "x"}]', "application/json"),
        (b'"x"', "application/json"),
    ],
    ids=["form-encoded", "array", "string"],
)
def test_a_body_that_is_not_a_json_object_says_so_once(
    client: TestClient, content: bytes, content_type: str
) -> None:
    response = client.post("/v1/tasks", content=content, headers={"Content-Type": content_type})
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalid_json"
    assert "must be a JSON object" in error["message"] and content_type in error["message"]
    assert _stored_task_ids() == []
