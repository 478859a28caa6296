"""Image and video tasks side by side, with real `tracker worker` and `tracker beat` processes,
a real broker and database, the simulator's two endpoints and a real webhook receiver.

The image tasks run on the default image schedule (`TRACKER_IMAGE_POLL_*`: first poll at 2 s,
then every 2-5 s); the video tasks on the fast schedule the test processes use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import Processes
from tracker import db
from tracker.db import migrate
from tracker.db.clock import utc_now
from tracker.states import TaskStatus
from tracker.tasks import queries, register
from tracker.tasks.views import TaskView
from tracker.testing.receiver import WebhookReceiver
from tracker.testing.simulator import Simulator, Step, TaskScript
from tracker.upstream.names import IMAGE_PROVIDER, VIDEO_PROVIDER
from tracker.webhooks import endpoints
from tracker.webhooks.guard import AddressPolicy

pytestmark = pytest.mark.e2e
DEADLINE_S = 90
IMAGE_URLS = ("https://cdn.example.invalid/side-1.png", "https://cdn.example.invalid/side-2.png")
VIDEO_URLS = ("https://cdn.example.invalid/side.mp4",)


@pytest.fixture(params=["sqlite+filesystem", "postgres+redis"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite+filesystem":
        url = f"sqlite:///{tmp_path / 'e2e.db'}"
        migrate.upgrade(url)
        return url, "filesystem://"
    postgres = request.getfixturevalue("clean_postgres_url")
    return str(postgres), str(request.getfixturevalue("redis_url"))


def _all_terminal(database_url: str, group: Processes) -> list[TaskView]:
    deadline = time.monotonic() + DEADLINE_S
    tasks: list[TaskView] = []
    while time.monotonic() < deadline:
        group.check_alive()
        with db.read_scope(database_url) as session:
            tasks = queries.list_tasks(session)
        if tasks and all(task.status.is_terminal for task in tasks):
            return tasks
        time.sleep(0.3)
    pytest.fail(f"tasks not terminal after {DEADLINE_S} s: {tasks}\n{group.logs()}")


def test_an_image_task_and_a_video_task_tracked_side_by_side_to_their_urls(
    stack: tuple[str, str], simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    database_url, broker_url = stack
    simulator.add_task(
        TaskScript(
            "side",
            (Step(1, polls=1), Step(2, polls=1), Step(3)),
            urls=IMAGE_URLS,
            kind="image",
            details={"category": "seedreamv4", "width": 1024, "height": 1024, "prompt": "a fox"},
        )
    )
    simulator.add_task(
        TaskScript("side-bad", (Step(2, polls=1), Step(4)), message="unsafe prompt", kind="image")
    )
    # The same ID as the image task, as a video task: upstream's two kinds are apart.
    simulator.add_task(
        TaskScript(
            "side", (Step(1, polls=1), Step(2, polls=1), Step(5, polls=1), Step(3)), urls=VIDEO_URLS
        )
    )
    with db.session_scope(database_url) as session:
        register.register(
            session, ["side", "side-bad"], first_poll_delay_s=2, provider=IMAGE_PROVIDER
        )
        register.register(session, ["side"], first_poll_delay_s=0, provider=VIDEO_PROVIDER)

    with WebhookReceiver() as receiver:
        with db.session_scope(database_url) as session:
            created = endpoints.add_endpoint(
                session,
                receiver.url + "/hook",
                events=["task.completed", "task.failed"],
                now=utc_now(),
                policy=AddressPolicy.from_setting("127.0.0.0/8"),
            )
        assert created.secret is not None
        receiver.set_secrets([created.secret])
        group = processes(database_url=database_url, broker_url=broker_url, simulator=simulator)
        group.start("worker", "worker", "--concurrency", "2")
        group.start("beat", "beat")

        tasks = {(task.provider, task.task_id): task for task in _all_terminal(database_url, group)}
        receiver.wait_for(3, timeout_s=DEADLINE_S)
        time.sleep(1.0)  # a duplicate, if any, would arrive now
        received = receiver.received

    image, video = tasks[IMAGE_PROVIDER, "side"], tasks[VIDEO_PROVIDER, "side"]
    assert (image.status, image.result_urls) == (TaskStatus.COMPLETED, IMAGE_URLS)
    assert image.details["category"] == "seedreamv4" and image.details["prompt"] == "a fox"
    assert (video.status, video.result_urls) == (TaskStatus.COMPLETED, VIDEO_URLS)
    bad = tasks[IMAGE_PROVIDER, "side-bad"]
    assert (bad.status, bad.upstream_message) == (TaskStatus.FAILED, "unsafe prompt")
    with db.read_scope(database_url) as session:
        image_path = [
            t.to_status.value for t in queries.history(session, "side", provider=IMAGE_PROVIDER)
        ]
        video_path = [t.to_status.value for t in queries.history(session, "side")]
    assert image_path == ["pending", "processing", "completed"]
    assert video_path == ["pending", "processing", "uploading", "completed"]
    # Each was asked on its own endpoint, once per poll, never twice at once.
    assert simulator.task_state("side", kind="image")["polls"] == image.poll_count == 3
    assert simulator.task_state("side")["polls"] == video.poll_count == 4
    assert simulator.task_state("side", kind="image")["max_concurrent_queries"] == 1

    assert all(r.verified for r in received)
    assert sorted(
        (r.payload["data"]["provider"], r.payload["data"]["task_id"], r.payload["type"])
        for r in received
    ) == [
        ("tensorslab", "side", "task.completed"),
        ("tensorslab-image", "side", "task.completed"),
        ("tensorslab-image", "side-bad", "task.failed"),
    ]
    by_provider = {
        r.payload["data"]["provider"]: r.payload["data"]
        for r in received
        if r.payload["type"] == "task.completed"
    }
    assert by_provider["tensorslab-image"]["result_urls"] == list(IMAGE_URLS)
    assert by_provider["tensorslab"]["result_urls"] == list(VIDEO_URLS)
