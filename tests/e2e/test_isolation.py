"""Webhooks do not starve polling, and one endpoint does not starve the others: `tracker up` (a
poll worker with beat, a webhook worker) on SQLite and the embedded broker, real receivers.

Rates are compared with a baseline measured in the same test, never with a fixed figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.processes import Processes
from tracker import db
from tracker.db import migrate
from tracker.db.clock import utc_now
from tracker.db.models import WebhookDelivery
from tracker.states import DeliveryStatus
from tracker.tasks import register, untrack
from tracker.testing.receiver import Answer, WebhookReceiver
from tracker.testing.simulator import Simulator, Step, TaskScript
from tracker.webhooks import endpoints
from tracker.webhooks.guard import AddressPolicy

pytestmark = pytest.mark.e2e

DEADLINE_S = 60.0
SLOW_S = 2.0  # an honest receiver that takes this long to answer
LOOPBACK = AddressPolicy.from_setting("127.0.0.0/8")


def _database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'isolation.db'}"
    migrate.upgrade(url)
    return url


def _add_endpoint(url: str, receiver: WebhookReceiver, path: str) -> None:
    with db.session_scope(url) as session:
        endpoints.add_endpoint(
            session,
            f"{receiver.url}/{path}",
            events=["task.cancelled"],
            now=utc_now(),
            policy=LOOPBACK,
        )


def _register(url: str, task_ids: Sequence[str], *, first_poll_delay_s: float) -> None:
    with db.session_scope(url) as session:
        register.register(
            session, list(task_ids), now=utc_now(), first_poll_delay_s=first_poll_delay_s
        )


def _cancel(url: str, task_ids: Sequence[str]) -> None:
    """Untrack the tasks: each cancellation is a delivery to every endpoint (the outbox)."""
    for task_id in task_ids:
        with db.session_scope(url) as session:
            untrack.untrack(session, task_id)


def _pending(url: str) -> int:
    with db.session_scope(url) as session:
        return int(
            session.scalar(
                select(func.count()).where(WebhookDelivery.status == DeliveryStatus.PENDING.value)
            )
            or 0
        )


def _polls(simulator: Simulator, task_ids: Sequence[str]) -> int:
    return sum(int(simulator.task_state(task_id)["polls"]) for task_id in task_ids)


def _wait(condition: Callable[[], bool], group: Processes, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        group.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {DEADLINE_S:g} s\n{group.logs()}")
        time.sleep(0.1)


def _poll_rate(simulator: Simulator, task_ids: Sequence[str], window_s: float) -> float:
    """Polls per task per second over about `window_s`."""
    before, started = _polls(simulator, task_ids), time.monotonic()
    time.sleep(window_s)
    after, ended = _polls(simulator, task_ids), time.monotonic()
    return (after - before) / len(task_ids) / (ended - started)


def test_a_slow_receiver_does_not_slow_polling(
    tmp_path: Path, simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    url = _database(tmp_path)
    steady = [f"steady-{i}" for i in range(20)]  # processing for ever: polled at a steady rate
    simulator.add_tasks(TaskScript(task_id, (Step(2),)) for task_id in steady)
    _register(url, steady, first_poll_delay_s=0)
    doomed = [f"doomed-{i}" for i in range(60)]  # never polled; cancelled to make deliveries
    _register(url, doomed, first_poll_delay_s=3600)
    group = processes(database_url=url, broker_url="filesystem://", simulator=simulator)

    with WebhookReceiver() as slow:
        slow.script(default=Answer(200, delay_s=SLOW_S))
        for index in range(6):  # six endpoints: more than the webhook pool can send at once
            _add_endpoint(url, slow, f"hook-{index}")
        group.start("up", "up", "--no-api", "--concurrency", "2")
        _wait(lambda: _polls(simulator, steady) >= 5 * len(steady), group, "steady polling")
        baseline = _poll_rate(simulator, steady, 5.0)

        _cancel(url, doomed)  # 360 deliveries due, to a receiver that takes 2 s for each
        _wait(lambda: len(slow.received) >= 8, group, "the slow receiver busy")
        loaded = _poll_rate(simulator, steady, 5.0)
        still_pending = _pending(url)

    assert baseline > 0, group.logs()
    assert still_pending > 0, "the backlog of slow deliveries ended before the measurement did"
    assert 0.8 <= loaded / baseline <= 1.2, (
        f"{loaded:.2f} polls per task per second with the slow receiver busy, against "
        f"{baseline:.2f} without\n{group.logs()}"
    )


def test_a_slow_endpoint_does_not_hold_up_a_fast_one(
    tmp_path: Path, simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    url = _database(tmp_path)
    early, late = [f"early-{i}" for i in range(24)], [f"late-{i}" for i in range(24)]
    _register(url, early + late, first_poll_delay_s=3600)  # never polled
    group = processes(database_url=url, broker_url="filesystem://", simulator=simulator)

    with WebhookReceiver() as slow, WebhookReceiver() as fast:
        slow.script(default=Answer(200, delay_s=SLOW_S))
        _add_endpoint(url, slow, "slow")
        _cancel(url, early)  # the slow endpoint's backlog comes first...
        _add_endpoint(url, fast, "fast")
        _cancel(url, late)  # ...then both endpoints get one delivery per task
        slow_total, fast_total = len(early) + len(late), len(late)

        group.start("up", "up", "--no-api", "--concurrency", "2")
        try:
            arrived = fast.wait_for(fast_total, timeout_s=DEADLINE_S)
        except TimeoutError as error:
            pytest.fail(f"{error}\n{group.logs()}")
        last_fast = max(item.received_at for item in arrived)
        slow_by_then = sum(item.received_at <= last_fast for item in slow.received)

    # While the fast endpoint got every one of its deliveries, the slow one was still working
    # through its own, which only it waits for.
    assert slow_by_then <= slow_total // 2, (
        f"the fast endpoint's last delivery arrived after {slow_by_then} of the slow one's "
        f"{slow_total}\n{group.logs()}"
    )
