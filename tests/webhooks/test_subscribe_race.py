"""Two callers adding the same webhook URL to the same task at once make one endpoint.

Two processes (spawned: no state shared but the database) meet at a barrier, then each
registers the same tracked task with the same webhook URL on PostgreSQL, round after round.
The partial unique index on live URL decides which caller makes the URL's endpoint (only it is
given the secret, once, in the first round); the subscription's primary key decides which one
subscribes each task.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
from typing import Any

from sqlalchemy import func, select

from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import TrackedTask, WebhookEndpoint, WebhookSubscription
from tracker.tasks import register
from tracker.webhooks.guard import AddressPolicy

ROUNDS = 40
URL = "http://127.0.0.1:9/hook"  # never sent to: the test only registers


def _task_id(round_number: int) -> str:
    return f"race-{round_number}"


def _caller(url: str, rounds: int, barrier: Any, results: Any) -> None:
    """One caller: each round, wait for the other, then register the round's task."""
    policy = AddressPolicy.from_setting("127.0.0.0/8")
    for round_number in range(rounds):
        barrier.wait(timeout=120)
        with db.session_scope(url) as session:
            [registration] = register.register(
                session,
                [_task_id(round_number)],
                now=utc_now(),
                first_poll_delay_s=600,
                webhook_url=URL,
                policy=policy,
            )
        results.put(
            (
                round_number,
                registration.webhook_secret,
                registration.webhook_added,
                registration.webhook_endpoint_id,
            )
        )
    db.dispose_engine()


Reported = tuple[str | None, bool, int | None]  # secret, subscribed by this call, endpoint


def race(url: str, rounds: int = ROUNDS) -> dict[int, list[Reported]]:
    """Run the two callers through `rounds` rounds; what each reported, by round."""
    with db.session_scope(url) as session:  # tracked already: only the webhooks race
        register.register(
            session, [_task_id(n) for n in range(rounds)], now=utc_now(), first_poll_delay_s=600
        )
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    callers = [
        context.Process(target=_caller, args=(url, rounds, barrier, results)) for _ in range(2)
    ]
    for process in callers:
        process.start()
    secrets: dict[int, list[Reported]] = {}
    try:
        for _ in range(2 * rounds):
            round_number, *reported = results.get(timeout=120)
            secrets.setdefault(round_number, []).append(tuple(reported))
    except queue_module.Empty:
        raise AssertionError(f"the callers stopped answering; got {secrets}") from None
    finally:
        for process in callers:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in callers] == [0, 0]
    return secrets


def subscriptions_per_task(url: str) -> dict[str, int]:
    with db.read_scope(url) as session:
        counted = session.execute(
            select(TrackedTask.task_id, func.count())
            .join(WebhookSubscription, WebhookSubscription.task_pk == TrackedTask.id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookSubscription.endpoint_id)
            .where(WebhookEndpoint.url == URL, WebhookEndpoint.removed_at.is_(None))
            .group_by(TrackedTask.task_id)
        ).all()
    return {task_id: count for task_id, count in counted}


def test_racing_registrations_make_one_endpoint_and_one_secret_per_url(
    clean_postgres_url: str,
) -> None:
    reports = race(clean_postgres_url)

    with db.read_scope(clean_postgres_url) as session:
        live = session.scalars(select(WebhookEndpoint.id).where(WebhookEndpoint.url == URL)).all()
    assert len(live) == 1  # one endpoint for the URL, whoever won
    assert subscriptions_per_task(clean_postgres_url) == {_task_id(n): 1 for n in range(ROUNDS)}
    given = [secret for reported in reports.values() for secret, _, _ in reported if secret]
    assert len(given) == 1, given  # the secret is shown once, to the caller that made it
    assert reports[0][0][0] or reports[0][1][0]  # in the first round
    for round_number, reported in sorted(reports.items()):
        assert len(reported) == 2, (round_number, reported)
        assert sorted(added for _, added, _ in reported) == [False, True], reported
        assert {endpoint for _, _, endpoint in reported} == {live[0]}
