"""The user's story with real processes: `tracker worker` and `tracker beat` against a real
broker (the embedded filesystem one, or Redis), a real database and the simulator.

Tests wait for conditions with generous deadlines; they never assert that something was fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.processes import Processes
from tracker import db
from tracker.db.clock import utc_now
from tracker.states import TaskStatus
from tracker.tasks import queries, register, views
from tracker.testing.receiver import Answer, Hang, WebhookReceiver
from tracker.testing.simulator import Simulator, Step, TaskScript
from tracker.webhooks import deliveries, endpoints
from tracker.webhooks.guard import AddressPolicy

pytestmark = pytest.mark.e2e
DEADLINE_S = 90


def _script_three_tasks(simulator: Simulator) -> None:
    simulator.add_task(
        TaskScript(
            "e2e-complete",
            (Step(1, polls=1), Step(2, polls=1), Step(5, polls=1), Step(3)),
            urls=("https://cdn.example.invalid/e2e.mp4",),
        )
    )
    simulator.add_task(
        TaskScript("e2e-fail", (Step(1, polls=1), Step(4)), message="prompt rejected")
    )
    # "e2e-never" is never created: it answers 404 until tracker gives up on it.


def _add_receiver_endpoint(database_url: str, receiver: WebhookReceiver) -> None:
    with db.session_scope(database_url) as session:
        created = endpoints.add_endpoint(
            session,
            receiver.url + "/hook",
            events=["task.completed", "task.failed", "task.not_found"],
            now=utc_now(),
            policy=AddressPolicy.from_setting("127.0.0.0/8"),
        )
    assert created.secret is not None
    receiver.set_secrets([created.secret])


def _assert_one_verified_webhook_per_outcome(receiver: WebhookReceiver) -> None:
    received = receiver.wait_for(3, timeout_s=DEADLINE_S)
    time.sleep(1.5)  # a duplicate, if any, would arrive now
    received = receiver.received
    assert sorted((r.payload["data"]["task_id"], r.payload["type"]) for r in received) == [
        ("e2e-complete", "task.completed"),
        ("e2e-fail", "task.failed"),
        ("e2e-never", "task.not_found"),
    ]
    assert all(r.verified for r in received)


def _register(database_url: str, *task_ids: str) -> None:
    with db.session_scope(database_url) as session:
        register.register(session, list(task_ids), now=utc_now(), first_poll_delay_s=0)


def _wait_until_terminal(database_url: str, group: Processes) -> dict[str, views.TaskView]:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        group.check_alive()
        with db.session_scope(database_url) as session:
            tasks = {task.task_id: task for task in queries.list_tasks(session)}
        if tasks and all(task.status.is_terminal for task in tasks.values()):
            return tasks
        time.sleep(0.3)
    pytest.fail(f"tasks not terminal after {DEADLINE_S} s: {tasks}\n{group.logs()}")


def _assert_three_outcomes(database_url: str, simulator: Simulator) -> None:
    with db.session_scope(database_url) as session:
        complete = queries.get_task(session, "e2e-complete")
        fail = queries.get_task(session, "e2e-fail")
        never = queries.get_task(session, "e2e-never")
        moves = {
            task_id: [
                (t.from_status.value, t.to_status.value) for t in queries.history(session, task_id)
            ]
            for task_id in ("e2e-complete", "e2e-fail", "e2e-never")
        }
    assert complete.status is TaskStatus.COMPLETED
    assert complete.result_urls == ("https://cdn.example.invalid/e2e.mp4",)
    assert fail.status is TaskStatus.FAILED and fail.upstream_message == "prompt rejected"
    assert never.status is TaskStatus.NOT_FOUND
    assert moves == {
        "e2e-complete": [
            ("registered", "pending"),
            ("pending", "processing"),
            ("processing", "uploading"),
            ("uploading", "completed"),
        ],
        "e2e-fail": [("registered", "pending"), ("pending", "failed")],
        "e2e-never": [("registered", "not_found")],
    }
    for task_id in ("e2e-complete", "e2e-fail"):
        assert simulator.task_state(task_id)["max_concurrent_queries"] == 1, task_id


@pytest.fixture(params=["sqlite+filesystem", "postgres+redis"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(database URL, broker URL) for the two ways to run tracker."""
    if request.param == "sqlite+filesystem":
        url = f"sqlite:///{tmp_path / 'e2e.db'}"
        from tracker.db import migrate

        migrate.upgrade(url)
        return url, "filesystem://"
    postgres = request.getfixturevalue("clean_postgres_url")
    return str(postgres), str(request.getfixturevalue("redis_url"))


def test_worker_and_beat_follow_tasks_to_completed_failed_and_not_found(
    stack: tuple[str, str], simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    database_url, broker_url = stack
    _script_three_tasks(simulator)
    _register(database_url, "e2e-complete", "e2e-fail", "e2e-never")
    group = processes(database_url=database_url, broker_url=broker_url, simulator=simulator)

    with WebhookReceiver() as receiver:
        _add_receiver_endpoint(database_url, receiver)
        group.start("worker", "worker", "--concurrency", "2")
        group.start("beat", "beat")
        _wait_until_terminal(database_url, group)

        _assert_three_outcomes(database_url, simulator)
        _assert_one_verified_webhook_per_outcome(receiver)


def test_two_beats_at_once_record_each_transition_once(
    clean_postgres_url: str,
    redis_url: str,
    simulator: Simulator,
    processes: Callable[..., Processes],
    tmp_path: Path,
) -> None:
    database_url = clean_postgres_url
    _script_three_tasks(simulator)
    _register(database_url, "e2e-complete", "e2e-fail", "e2e-never")
    group = processes(database_url=database_url, broker_url=redis_url, simulator=simulator)

    with WebhookReceiver() as receiver:
        _add_receiver_endpoint(database_url, receiver)
        group.start("worker", "worker", "--concurrency", "4")
        group.start("beat-1", "beat", "--schedule", str(tmp_path / "beat-1"))
        group.start("beat-2", "beat", "--schedule", str(tmp_path / "beat-2"))
        _wait_until_terminal(database_url, group)

        _assert_three_outcomes(database_url, simulator)
        _assert_one_verified_webhook_per_outcome(receiver)


def test_flushing_redis_loses_no_task(
    clean_postgres_url: str,
    redis_url: str,
    simulator: Simulator,
    processes: Callable[..., Processes],
) -> None:
    database_url = clean_postgres_url
    _script_three_tasks(simulator)
    _register(database_url, "e2e-complete", "e2e-fail", "e2e-never")
    group = processes(database_url=database_url, broker_url=redis_url, simulator=simulator)
    broker = redis.Redis.from_url(redis_url)

    # Beat alone claims the due tasks and queues poll messages that no worker takes...
    group.start("beat", "beat")
    deadline = time.monotonic() + DEADLINE_S
    while not broker.llen(group.env["TRACKER_QUEUE"]):
        group.check_alive()
        assert time.monotonic() < deadline, group.logs()
        time.sleep(0.2)
    group.stop("beat")
    broker.flushdb()  # ...and they are lost.

    group.start("worker", "worker")
    group.start("beat", "beat")
    _wait_until_terminal(database_url, group)

    _assert_three_outcomes(database_url, simulator)


def test_a_worker_killed_between_claim_and_send_still_delivers(
    clean_postgres_url: str,
    redis_url: str,
    simulator: Simulator,
    processes: Callable[..., Processes],
) -> None:
    database_url = clean_postgres_url
    simulator.add_task(TaskScript("e2e-complete", (Step(2, polls=1), Step(3))))
    _register(database_url, "e2e-complete")
    group = processes(
        database_url=database_url,
        broker_url=redis_url,
        simulator=simulator,
        TRACKER_WEBHOOK_TIMEOUT_S="5",  # long enough that the kill, not a timeout, ends the send
        TRACKER_WEBHOOK_LEASE_S="20",
    )

    with WebhookReceiver() as receiver:
        _add_receiver_endpoint(database_url, receiver)
        receiver.script(Hang(60), default=Answer(200))  # the first send never gets an answer
        group.start("worker", "worker", "--concurrency", "1")
        group.start("beat", "beat")
        try:
            [first] = receiver.wait_for(1, timeout_s=DEADLINE_S)
        except TimeoutError as error:
            pytest.fail(f"{error}\n{group.logs()}")
        group.kill("worker")  # mid-send: nothing recorded, the lease is still held

        group.start("worker", "worker", "--concurrency", "1")
        received = receiver.wait_for(2, timeout_s=DEADLINE_S)

    assert received[1].headers["webhook-id"] == first.headers["webhook-id"]
    assert received[1].verified
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        with db.session_scope(database_url) as session:
            [sent] = deliveries.page_deliveries(session).deliveries
        if sent.status == "delivered":
            break
        time.sleep(0.3)
    assert sent.status == "delivered", group.logs()
    with db.session_scope(database_url) as session:
        view = deliveries.get_delivery(session, str(sent.id))
    assert [a.succeeded for a in view.attempts] == [True]  # the killed send left no record
