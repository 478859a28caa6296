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

    gone = client.delete("/v1/tasks/t-1", params={"provider": "tensorslab-image"})
    assert gone.status_code == 200 and gone.json()["status"] == "cancelled"
    assert client.get("/v1/tasks/t-1").json()["status"] == "registered"

    listed = client.get("/v1/tasks", params={"provider": "tensorslab-image"}).json()["tasks"]
    assert [(t["task_id"], t["provider"]) for t in listed] == [("t-1", "tensorslab-image")]


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
    for path in ("/v1/tasks/q-1", "/v1/tasks/q-1/transitions", "/v1/tasks"):
        answer = client.get(path, params={"provider": "nope"})
        assert answer.status_code == 422, path
        assert "unknown provider 'nope'" in answer.json()["error"]["message"]
    missing = client.get("/v1/tasks/q-1", params={"provider": "tensorslab-image"})
    assert missing.status_code == 404
    assert "no tracked tensorslab-image task" in missing.json()["error"]["message"]
