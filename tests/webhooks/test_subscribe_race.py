"""Two callers adding the same webhook URL to the same task at once make one endpoint.

Two processes (spawned: no state shared but the database) meet at a barrier, then each
registers the same tracked task with the same webhook URL on PostgreSQL, round after round.
The partial unique index on live (task, URL) decides: one insert wins, and only its caller is
given a secret.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
from typing import Any

from sqlalchemy import func, select

from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import TrackedTask, WebhookEndpoint
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
        results.put((round_number, registration.webhook_secret))
    db.dispose_engine()


def race(url: str, rounds: int = ROUNDS) -> dict[int, list[str | None]]:
    """Run the two callers through `rounds` rounds; each round's secrets, as they reported."""
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
    secrets: dict[int, list[str | None]] = {}
    try:
        for _ in range(2 * rounds):
            round_number, secret = results.get(timeout=120)
            secrets.setdefault(round_number, []).append(secret)
    except queue_module.Empty:
        raise AssertionError(f"the callers stopped answering; got {secrets}") from None
    finally:
        for process in callers:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in callers] == [0, 0]
    return secrets


def endpoints_per_task(url: str) -> dict[str, int]:
    with db.read_scope(url) as session:
        counted = session.execute(
            select(TrackedTask.task_id, func.count(WebhookEndpoint.id))
            .join(WebhookEndpoint, WebhookEndpoint.task_pk == TrackedTask.id)
            .where(WebhookEndpoint.url == URL, WebhookEndpoint.removed_at.is_(None))
            .group_by(TrackedTask.task_id)
        ).all()
    return {task_id: count for task_id, count in counted}


def test_racing_registrations_make_one_endpoint_and_one_secret_per_task(
    clean_postgres_url: str,
) -> None:
    secrets = race(clean_postgres_url)

    assert endpoints_per_task(clean_postgres_url) == {_task_id(n): 1 for n in range(ROUNDS)}
    for round_number, reported in sorted(secrets.items()):
        given = [secret for secret in reported if secret is not None]
        assert len(reported) == 2 and len(given) == 1, (round_number, reported)
    with db.read_scope(clean_postgres_url) as session:
        stored = set(session.scalars(select(WebhookEndpoint.secret)))
    assert stored == {secret for reported in secrets.values() for secret in reported if secret}
