"""Submit and track with real processes: `tracker submit` against the simulator's create
endpoints, real `tracker worker` and `tracker beat` following the task, a real webhook receiver,
and the HTTP API's Idempotency-Key.

The user's story: submit a video, get the webhook when it is done; a create whose connection
drops is reported as unknown and never sent again; a refused input sends nothing.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.processes import Processes
from tracker import db, tokens
from tracker.db.clock import utc_now
from tracker.db.migrate import upgrade
from tracker.tasks import queries, submit
from tracker.testing.processes import tracker_command
from tracker.testing.receiver import WebhookReceiver
from tracker.testing.simulator import Simulator
from tracker.testing.simulator.creates import CreateBehaviour

pytestmark = pytest.mark.e2e
DEADLINE_S = 90


def _run(group: Processes, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tracker_command(*args),
        env=group.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'submit.db'}"
    upgrade(url)
    return url


def _submissions(database_url: str) -> list[submit.SubmissionView]:
    with db.read_scope(database_url) as session:
        return submit.list_submissions(session)


def test_submit_video_creates_one_task_and_tracks_it_to_its_webhook(
    clean_postgres_url: str,
    redis_url: str,
    simulator: Simulator,
    processes: Callable[..., Processes],
) -> None:
    group = processes(database_url=clean_postgres_url, broker_url=redis_url, simulator=simulator)
    group.start("worker", "worker", "--concurrency", "2")
    group.start("beat", "beat")
    with WebhookReceiver() as receiver:
        done = _run(
            group,
            "submit",
            "video",
            "--model",
            "seedancev2",
            "--prompt",
            "a red fox running through fresh snow",
            "--duration",
            "5",
            "--resolution",
            "720p",
            "--ratio",
            "16:9",
            "--webhook",
            f"{receiver.url}/hook",
            "--metadata",
            '{"order": 1042}',
            "--json",
        )
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        receiver.set_secrets([answer["webhook_secret"]])
        task_id = answer["task_id"]
        assert answer["status"] == "created"

        [webhook] = receiver.wait_for(1, timeout_s=DEADLINE_S)
        time.sleep(1.0)  # a duplicate, if any, would arrive now
        assert len(receiver.received) == 1

    assert webhook.verified
    assert webhook.payload["type"] == "task.completed"
    assert webhook.payload["data"]["task_id"] == task_id
    assert webhook.payload["data"]["metadata"] == {"order": 1042}
    assert webhook.payload["data"]["result_urls"] == [f"https://cdn.example.invalid/{task_id}.mp4"]
    [created] = simulator.creates()  # exactly one upstream task
    assert (created.kind, created.model, created.task_id) == ("video", "seedancev2", task_id)
    assert dict(created.fields) == {
        "prompt": "a red fox running through fresh snow",
        "duration": "5",
        "resolution": "720p",
        "ratio": "16:9",
    }
    [stored] = _submissions(clean_postgres_url)
    assert (stored.status, stored.task_id) == (submit.SubmissionStatus.CREATED, task_id)
    with db.read_scope(clean_postgres_url) as session:
        assert queries.get_task(session, task_id).status.value == "completed"
    listed = _run(group, "submissions", "--json")
    assert [item["task_id"] for item in json.loads(listed.stdout)] == [task_id]


def test_a_create_whose_connection_drops_ends_unknown_and_is_not_resent(
    tmp_path: Path, simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    database_url = _sqlite(tmp_path)
    group = processes(database_url=database_url, broker_url="filesystem://", simulator=simulator)
    simulator.set_create_behaviour(CreateBehaviour(drop_after_receiving=1))
    group.start("worker", "worker", "--concurrency", "1")
    group.start("beat", "beat")

    done = _run(group, "submit", "video", "--model", "seedancev1profast", "--prompt", "a boat")

    assert done.returncode == 1, done.stderr
    assert "outcome is unknown" in done.stderr and "will not resend" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    time.sleep(3)  # worker and beat run meanwhile: nothing of theirs sends a create
    [create] = simulator.creates()  # one create reached upstream, and it was never sent again
    assert create.outcome == "dropped"
    [stored] = _submissions(database_url)
    assert stored.status is submit.SubmissionStatus.UNKNOWN
    assert stored.task_id is None
    assert stored.request == {"kind": "video", "model": "seedancev1profast", "prompt": "a boat"}
    with db.read_scope(database_url) as session:
        assert queries.list_tasks(session) == []  # nothing tracked: the ID never came back
    shown = _run(group, "submissions")
    assert "submission_unknown" in shown.stdout
    assert simulator.stats()["by_outcome"].get("create_dropped") == 1


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["video", "--model", "seedancev9", "--prompt", "x"], "unknown video model"),
        (["video", "--model", "seedancev2", "--prompt", "x" * 8193], "8192"),
        (["video", "--model", "seedancev15pro", "--prompt", "x", "--duration", "15"], "5 to 10"),
        (["video", "--model", "seedancev15pro", "--prompt", "x", "--resolution", "1440p"], "1440p"),
        (
            ["video", "--model", "seedancev2", "--prompt", "x", "--image-url", "file:///etc/x"],
            "http",
        ),
        (["video", "--model", "seedancev2", "--prompt", "x", "--metadata", "[1, 2]"], "object"),
        (["image", "--model", "seedreamv4", "--prompt", "x", "--resolution", "4K"], "4K"),
        (["image", "--model", "zimage", "--prompt", "x", "--batch-size", "2"], "batch"),
    ],
)
def test_refused_input_sends_and_stores_nothing(
    tmp_path: Path,
    simulator: Simulator,
    processes: Callable[..., Processes],
    args: list[str],
    said: str,
) -> None:
    database_url = _sqlite(tmp_path)
    group = processes(database_url=database_url, broker_url="filesystem://", simulator=simulator)

    done = _run(group, "submit", *args)

    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert said in line
    assert simulator.creates() == [] and simulator.requests.times() == []
    assert _submissions(database_url) == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(what: str, check: Callable[[], Any], group: Processes) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    last: Any = None
    while time.monotonic() < deadline:
        group.check_alive()
        try:
            last = check()
        except requests.ConnectionError as error:
            last = error
        else:
            if last:
                return last
        time.sleep(0.3)
    pytest.fail(f"{what}: not after {DEADLINE_S} s (last: {last!r})\n{group.logs()}")


def test_an_idempotency_key_makes_a_retried_post_create_one_task(
    clean_postgres_url: str,
    redis_url: str,
    simulator: Simulator,
    processes: Callable[..., Processes],
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    group = processes(
        database_url=clean_postgres_url,
        broker_url=redis_url,
        simulator=simulator,
        TRACKER_API_PORT=str(port),
    )
    group.start("up", "up", "--concurrency", "1")
    _wait_for("the API answers /healthz", lambda: requests.get(f"{base}/healthz").ok, group)
    with db.session_scope(clean_postgres_url) as session:
        token = tokens.create_token(session, "submit test", now=utc_now()).secret
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    body = {"kind": "video", "model": "seedancev2", "prompt": "a lighthouse", "duration": 5}

    first = http.post(f"{base}/v1/submissions", json=body, headers={"Idempotency-Key": "k-1"})
    again = http.post(f"{base}/v1/submissions", json=body, headers={"Idempotency-Key": "k-1"})
    other = http.post(
        f"{base}/v1/submissions",
        json={**body, "prompt": "another lighthouse"},
        headers={"Idempotency-Key": "k-1"},
    )

    assert first.status_code == 201, first.text
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["task_id"] == first.json()["task_id"]
    assert other.status_code == 409, other.text
    assert "Idempotency-Key" in other.json()["error"]["message"]
    assert len(simulator.creates()) == 1  # one paid task for the three requests
    task_id = first.json()["task_id"]

    def completed() -> bool:
        return bool(http.get(f"{base}/v1/tasks/{task_id}").json().get("status") == "completed")

    _wait_for("the submitted task completed", completed, group)
    listed = http.get(f"{base}/v1/submissions").json()["submissions"]
    assert [item["task_id"] for item in listed] == [task_id]
    assert http.get(f"{base}/v1/submissions/{first.json()['id']}").json()["status"] == "created"

    bad = http.post(f"{base}/v1/submissions", json={**body, "duration": 99})
    assert bad.status_code == 422, bad.text
    assert len(simulator.creates()) == 1


def test_submit_image_is_tracked_by_the_image_provider_to_its_urls(
    tmp_path: Path, simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    database_url = _sqlite(tmp_path)
    group = processes(database_url=database_url, broker_url="filesystem://", simulator=simulator)
    group.start("worker", "worker", "--concurrency", "1")
    group.start("beat", "beat")

    done = _run(
        group,
        "submit",
        "image",
        "--model",
        "seedreamv45",
        "--prompt",
        "a lighthouse at dusk",
        "--resolution",
        "16:9",
        "--batch-size",
        "2",
        "--json",
    )

    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["provider"] == "tensorslab-image"
    task_id = answer["task_id"]
    [created] = simulator.creates()
    assert (created.kind, created.model) == ("image", "seedreamv45")
    assert dict(created.fields) == {
        "prompt": "a lighthouse at dusk",
        "resolution": "16:9",
        "batchsize": "2",
    }
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        group.check_alive()
        with db.read_scope(database_url) as session:
            task = queries.get_task(session, task_id, provider="tensorslab-image")
        if task.status.is_terminal:
            break
        time.sleep(0.3)
    assert task.status.value == "completed", group.logs()
    assert task.result_urls == (f"https://cdn.example.invalid/{task_id}.png",)
