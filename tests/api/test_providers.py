"""The HTTP API with two providers: `provider` in the body, `?provider=` on one task's routes.

A task is identified by provider and ID; the URLs without `?provider=` are the video tasks'
(`tensorslab`), as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Configure
from tracker import db, tokens
from tracker.api import create_app
from tracker.db.clock import utc_now
from tracker.tasks.decide import PauseCause, ProviderPause
from tracker.tasks.pauses import pause_provider


@pytest.fixture
def client(database_url: str, configure: Configure) -> Iterator[TestClient]:
    configure(TRACKER_DATABASE_URL=database_url)
    with TestClient(create_app(), raise_server_exceptions=False) as api:
        with db.session_scope() as session:
            secret = tokens.create_token(session, "tests", now=utc_now()).secret
        api.headers["Authorization"] = f"Bearer {secret}"
        yield api


def test_one_id_registered_for_both_providers_is_two_tasks(client: TestClient) -> None:
    image = client.post("/v1/tasks", json={"task_id": "t-1", "provider": "tensorslab-image"})
    assert image.status_code == 201, image.text
    assert image.json()["task"]["provider"] == "tensorslab-image"
    video = client.post("/v1/tasks", json={"task_id": "t-1"})
    assert video.status_code == 201 and video.json()["task"]["provider"] == "tensorslab"

    assert client.get("/v1/tasks/t-1").json()["provider"] == "tensorslab"
    got = client.get("/v1/tasks/t-1", params={"provider": "tensorslab-image"})
    assert got.status_code == 200 and got.json()["provider"] == "tensorslab-image"
    transitions = client.get("/v1/tasks/t-1/transitions", params={"provider": "tensorslab-image"})
    assert transitions.status_code == 200 and transitions.json()["transitions"] == []

    still_tracked = client.delete("/v1/tasks/t-1", params={"provider": "tensorslab-image"})
    assert still_tracked.status_code == 409  # erasing needs an ended task: cancel it first
    cancelled = client.post("/v1/tasks/t-1/cancel", params={"provider": "tensorslab-image"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["provider"] == "tensorslab-image"
    assert client.get("/v1/tasks/t-1").json()["status"] == "registered"

    listed = client.get("/v1/tasks", params={"provider": "tensorslab-image"}).json()["tasks"]
    assert [(t["task_id"], t["provider"]) for t in listed] == [("t-1", "tensorslab-image")]

    erased = client.delete("/v1/tasks/t-1", params={"provider": "tensorslab-image"})
    assert erased.status_code == 204, erased.text
    assert client.get("/v1/tasks/t-1", params={"provider": "tensorslab-image"}).status_code == 404
    assert client.get("/v1/tasks/t-1").json()["status"] == "registered"  # the video task stays
    assert client.delete("/v1/tasks/t-1").status_code == 409  # ... and is still tracked


def test_an_image_task_is_first_polled_sooner_than_a_video_task(client: TestClient) -> None:
    image = client.post(
        "/v1/tasks", json={"task_id": "img", "provider": "tensorslab-image"}
    ).json()["task"]
    video = client.post("/v1/tasks", json={"task_id": "vid"}).json()["task"]

    def first_poll_in(task: dict[str, str]) -> timedelta:
        from datetime import datetime

        return datetime.fromisoformat(task["next_poll_at"]) - datetime.fromisoformat(
            task["created_at"]
        )

    assert first_poll_in(image) == timedelta(seconds=2)  # TRACKER_IMAGE_POLL_FIRST_DELAY_S
    assert first_poll_in(video) == timedelta(seconds=5)  # TRACKER_POLL_FIRST_DELAY_S


def test_a_batch_may_mix_providers_and_is_stored_whole_or_not_at_all(client: TestClient) -> None:
    body = {
        "tasks": [
            {"task_id": "b-1", "provider": "tensorslab-image"},
            {"task_id": "b-2"},
            {"task_id": "b-1"},
        ]
    }
    answer = client.post("/v1/tasks", json=body)
    assert answer.status_code == 201, answer.text
    assert [(t["task"]["task_id"], t["task"]["provider"]) for t in answer.json()["tasks"]] == [
        ("b-1", "tensorslab-image"),
        ("b-2", "tensorslab"),
        ("b-1", "tensorslab"),
    ]
    refused = client.post(
        "/v1/tasks",
        json={"tasks": [{"task_id": "c-1"}, {"task_id": "c-2", "provider": "tensorslab-audio"}]},
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_input"
    assert "unknown provider 'tensorslab-audio'" in refused.json()["error"]["message"]
    assert client.get("/v1/tasks/c-1").status_code == 404


def test_an_unknown_provider_in_a_query_is_refused(client: TestClient) -> None:
    client.post("/v1/tasks", json={"task_id": "q-1"})
    for method, path in (
        ("GET", "/v1/tasks/q-1"),
        ("GET", "/v1/tasks/q-1/transitions"),
        ("GET", "/v1/tasks"),
        ("POST", "/v1/tasks/q-1/cancel"),
        ("DELETE", "/v1/tasks/q-1"),
        ("POST", "/v1/providers/nope/resume"),
    ):
        answer = client.request(method, path, params={"provider": "nope"})
        assert answer.status_code == 422, path
        assert "unknown provider 'nope'" in answer.json()["error"]["message"]
    assert client.get("/v1/tasks/q-1").json()["status"] == "registered"  # nothing changed
    missing = client.get("/v1/tasks/q-1", params={"provider": "tensorslab-image"})
    assert missing.status_code == 404
    assert "no tracked tensorslab-image task" in missing.json()["error"]["message"]


def test_an_image_pause_shows_on_image_tasks_only_and_resume_takes_its_name(
    client: TestClient,
) -> None:
    client.post("/v1/tasks", json={"task_id": "p-1", "provider": "tensorslab-image"})
    client.post("/v1/tasks", json={"task_id": "p-1"})
    now = utc_now()
    with db.session_scope() as session:
        pause_provider(
            session,
            "tensorslab-image",
            ProviderPause(
                now + timedelta(minutes=10), "code 9000: no credits", PauseCause.NO_CREDITS
            ),
            at=now,
        )

    image = client.get("/v1/tasks/p-1", params={"provider": "tensorslab-image"}).json()
    assert image["paused"]["provider"] == "tensorslab-image"
    assert image["paused"]["cause"] == "no_credits"
    assert client.get("/v1/tasks/p-1").json()["paused"] is None  # the video task polls on
    listed = {t["provider"]: t["paused"] for t in client.get("/v1/tasks").json()["tasks"]}
    assert listed["tensorslab"] is None and listed["tensorslab-image"]["cause"] == "no_credits"

    assert client.post("/v1/providers/tensorslab/resume").status_code == 409  # not paused
    resumed = client.post("/v1/providers/tensorslab-image/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["provider"] == "tensorslab-image"
    assert resumed.json()["cause"] == "no_credits"
    assert (
        client.get("/v1/tasks/p-1", params={"provider": "tensorslab-image"}).json()["paused"]
        is None
    )
