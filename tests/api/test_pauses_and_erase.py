"""The routes of pauses and erasure, through FastAPI's TestClient on SQLite and PostgreSQL:
a paused provider shows on its live tasks, /readyz and /metrics, `resume` lifts it; `cancel`
stops tracking; DELETE erases an ended task (409 while tracked)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Configure
from tests.tasks.history import counts, ended_task
from tracker import db, tokens
from tracker.api import create_app
from tracker.db.clock import utc_now
from tracker.tasks import retention
from tracker.tasks.decide import PauseCause, ProviderPause
from tracker.tasks.pauses import pause_provider


@pytest.fixture
def client(database_url: str, configure: Configure) -> Iterator[TestClient]:
    configure(TRACKER_DATABASE_URL=database_url, TRACKER_BROKER_URL="memory://")
    with TestClient(create_app(), raise_server_exceptions=False) as api:
        with db.session_scope() as session:
            secret = tokens.create_token(session, "tests", now=utc_now()).secret
        api.headers["Authorization"] = f"Bearer {secret}"
        yield api


def _pause_for_a_refused_key() -> None:
    now = utc_now()
    with db.session_scope() as session:
        pause_provider(
            session,
            "tensorslab",
            ProviderPause(
                now + timedelta(minutes=5),
                "unauthorized: HTTP 401: API key refused: bad key",
                PauseCause.UNAUTHORIZED,
            ),
            at=now,
        )


def test_a_paused_provider_shows_everywhere_and_resume_lifts_it(client: TestClient) -> None:
    client.post("/v1/tasks", json={"task_id": "live-1"})
    assert client.get("/v1/tasks/live-1").json()["paused"] is None
    assert client.post("/v1/providers/tensorslab/resume").status_code == 409

    _pause_for_a_refused_key()

    paused = client.get("/v1/tasks/live-1").json()["paused"]
    assert paused["cause"] == "unauthorized" and "HTTP 401" in paused["reason"]
    assert [task["paused"]["cause"] for task in client.get("/v1/tasks").json()["tasks"]] == [
        "unauthorized"
    ]
    ready = client.get("/readyz")
    assert ready.status_code == 200, "a pause does not make the API unready"
    assert [pause["cause"] for pause in ready.json()["paused"]] == ["unauthorized"]
    assert (
        'tracker_provider_paused{provider="tensorslab",reason="unauthorized"} 1.0'
        in client.get("/metrics").text
    )

    resumed = client.post("/v1/providers/tensorslab/resume")
    assert resumed.status_code == 200
    assert resumed.json()["cause"] == "unauthorized"
    assert client.get("/v1/tasks/live-1").json()["paused"] is None
    assert client.get("/readyz").json()["paused"] == []
    assert "tracker_provider_paused{" not in client.get("/metrics").text
    again = client.post("/v1/providers/tensorslab/resume")
    assert again.status_code == 409
    assert again.json()["error"]["message"] == (
        "polling of tensorslab is not paused; nothing to resume"
    )


def test_cancel_stops_tracking_and_delete_erases_only_an_ended_task(client: TestClient) -> None:
    client.post("/v1/tasks", json={"task_id": "t-1"})
    with db.session_scope() as session:
        ended_task(session, "old", ended_at=utc_now() - timedelta(days=1))
        before = counts(session)

    refused = client.delete("/v1/tasks/t-1")
    assert refused.status_code == 409
    assert "untrack it first" in refused.json()["error"]["message"]
    assert client.get("/v1/tasks/t-1").json()["status"] == "registered"

    assert client.post("/v1/tasks/t-1/cancel").json()["status"] == "cancelled"
    erased = client.delete("/v1/tasks/t-1")
    assert erased.status_code == 204 and erased.content == b""
    assert client.get("/v1/tasks/t-1").status_code == 404
    assert client.get("/v1/tasks/t-1/transitions").status_code == 404
    assert client.delete("/v1/tasks/t-1").status_code == 404

    assert client.delete("/v1/tasks/old").status_code == 204
    with db.read_scope() as session:
        after = counts(session)
    # t-1: the task (its cancelled transition came after `before`, and went with it); old: the
    # task, its transition, delivery, attempt and per-task endpoint.
    assert after == {
        "tasks": before["tasks"] - 2,
        "transitions": before["transitions"] - 1,
        "deliveries": before["deliveries"] - 1,
        "attempts": before["attempts"] - 1,
        "subscriptions": before["subscriptions"] - 1,
    }
    assert client.get("/v1/deliveries", params={"task_id": "old"}).json()["deliveries"] == []


def test_metrics_count_the_tasks_pruned_in_all(client: TestClient) -> None:
    assert "tracker_pruned_tasks_total 0.0" in client.get("/metrics").text
    now = utc_now()
    with db.session_scope() as session:
        ended_task(session, "a", ended_at=now - timedelta(days=200))
        ended_task(session, "b", ended_at=now - timedelta(days=200))
    retention.prune(db.session_scope, cutoff=now - timedelta(days=90), now=now)
    retention.prune(db.session_scope, cutoff=now - timedelta(days=90), now=now)  # nothing more
    assert "tracker_pruned_tasks_total 2.0" in client.get("/metrics").text
