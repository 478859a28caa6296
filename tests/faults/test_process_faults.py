"""The fault campaign with real processes: `tracker worker` and `tracker beat` run scripted
tasks against a real database, broker, simulator and webhook receiver while the test breaks
something (the database, the broker, the workers, or runs two of everything), then counts what
went wrong: lost tasks, duplicated transitions, lost webhook messages, messages sent under two
webhook-ids and overlapping polls of one task. Every count must be 0.

Each scenario prints a one-line summary (see the "fault campaign" section of pytest's report).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.campaign import (
    Campaign,
    add_receiver_endpoint,
    sleep_checking,
    wait_until_settled,
)
from tests.faults.servers import MissingTool, ThrowawayPostgres, ThrowawayRedis
from tests.processes import Processes
from tracker import db
from tracker.db import migrate
from tracker.testing.receiver import WebhookReceiver
from tracker.testing.simulator import Simulator

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture
def own_postgres() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL server of this test's own (it is stopped and started mid-run), migrated."""
    try:
        server = ThrowawayPostgres()
    except MissingTool as error:
        pytest.skip(f"FAULT SCENARIO NOT RUN: no throwaway PostgreSQL server: {error}")
    try:
        try:
            server.start()
        except MissingTool as error:
            pytest.skip(f"FAULT SCENARIO NOT RUN: the throwaway PostgreSQL did not start: {error}")
        migrate.upgrade(server.url)
        yield server
    finally:
        db.dispose_engine()
        server.close()


@pytest.fixture
def own_redis() -> Iterator[ThrowawayRedis]:
    """A Redis server of this test's own (it is killed mid-run), never the shared one."""
    try:
        server = ThrowawayRedis()
        server.start()
    except MissingTool as error:
        pytest.skip(f"FAULT SCENARIO NOT RUN: no throwaway Redis server: {error}")
    try:
        yield server
    finally:
        server.close()


def _run(
    campaign: Campaign,
    *,
    database_url: str,
    broker_url: str,
    simulator: Simulator,
    receiver: WebhookReceiver,
    processes: Callable[..., Processes],
    tmp_path: Path,
    inject: Callable[[Processes], None],
    workers: int = 1,
    beats: int = 1,
) -> None:
    """Start the processes, let `inject` break things, wait for the run to settle, count."""
    add_receiver_endpoint(database_url, receiver)
    group = processes(database_url=database_url, broker_url=broker_url, simulator=simulator)
    campaign.start(database_url, simulator)
    for n in range(1, workers + 1):
        group.start(f"worker-{n}", "worker", "--concurrency", "2")
    for n in range(1, beats + 1):
        group.start(f"beat-{n}", "beat", "--schedule", str(tmp_path / f"beat-{n}"))

    inject(group)
    wait_until_settled(
        database_url, campaign.task_ids, receiver, check_alive=group.check_alive, logs=group.logs
    )

    counts = campaign.counts(database_url, simulator, receiver)
    campaign.report(counts, receiver, simulator)
    assert counts.as_tuple() == (0, 0, 0, 0, 0), f"{counts.line()}\n{counts.detail}"


def test_postgres_restarted_and_stopped_mid_run(
    own_postgres: ThrowawayPostgres,
    redis_url: str,
    simulator: Simulator,
    receiver: WebhookReceiver,
    processes: Callable[..., Processes],
    tmp_path: Path,
) -> None:
    campaign = Campaign("pg-outage", stack="own PostgreSQL + Redis", count=40)

    def inject(group: Processes) -> None:
        sleep_checking(2.5, group.check_alive)
        own_postgres.stop("fast")  # a clean restart...
        own_postgres.start()
        campaign.fault("postgres restarted")
        sleep_checking(2.0, group.check_alive)
        own_postgres.stop("immediate")  # ...then a crash, and 7 s without a database
        campaign.fault("postgres crashed, down 7s")
        sleep_checking(7.0, group.check_alive)
        own_postgres.start()

    _run(
        campaign,
        database_url=own_postgres.url,
        broker_url=redis_url,
        simulator=simulator,
        receiver=receiver,
        processes=processes,
        tmp_path=tmp_path,
        inject=inject,
    )


def test_redis_killed_and_flushed_mid_run(
    own_redis: ThrowawayRedis,
    clean_postgres_url: str,
    simulator: Simulator,
    receiver: WebhookReceiver,
    processes: Callable[..., Processes],
    tmp_path: Path,
) -> None:
    campaign = Campaign("redis-kill", stack="PostgreSQL + own Redis", count=40)

    def inject(group: Processes) -> None:
        for down_s in (3.0, 1.0):
            sleep_checking(3.0, group.check_alive)
            own_redis.kill()  # kill -9: every queued message is gone
            campaign.fault(f"redis kill -9, down {down_s:g}s, back empty")
            sleep_checking(down_s, group.check_alive)
            own_redis.start()

    _run(
        campaign,
        database_url=clean_postgres_url,
        broker_url=own_redis.url,
        simulator=simulator,
        receiver=receiver,
        processes=processes,
        tmp_path=tmp_path,
        inject=inject,
    )


@pytest.fixture(params=["postgres+redis", "sqlite+filesystem"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, str]:
    """(name, database URL, broker URL): the shared PostgreSQL and Redis (db 14), or a SQLite
    file and the embedded broker."""
    if request.param == "sqlite+filesystem":
        url = f"sqlite:///{tmp_path / 'faults.db'}"
        migrate.upgrade(url)
        return "SQLite + embedded broker", url, "filesystem://"
    postgres = str(request.getfixturevalue("clean_postgres_url"))
    return "PostgreSQL + Redis", postgres, str(request.getfixturevalue("redis_url"))


def test_workers_sigkilled_mid_run(
    stack: tuple[str, str, str],
    simulator: Simulator,
    receiver: WebhookReceiver,
    processes: Callable[..., Processes],
    tmp_path: Path,
) -> None:
    name, database_url, broker_url = stack
    campaign = Campaign("worker-kill", stack=name, count=40)

    def inject(group: Processes) -> None:
        for _ in range(3):
            sleep_checking(2.5, group.check_alive)
            group.kill("worker-1")  # SIGKILL of the worker and its pool, mid-poll or mid-send
            campaign.fault("worker SIGKILL")
            sleep_checking(0.5, group.check_alive)
            group.start("worker-1", "worker", "--concurrency", "2")

    _run(
        campaign,
        database_url=database_url,
        broker_url=broker_url,
        simulator=simulator,
        receiver=receiver,
        processes=processes,
        tmp_path=tmp_path,
        inject=inject,
    )


def test_two_beats_and_two_workers_at_once(
    clean_postgres_url: str,
    redis_url: str,
    simulator: Simulator,
    receiver: WebhookReceiver,
    processes: Callable[..., Processes],
    tmp_path: Path,
) -> None:
    campaign = Campaign("two-of-each", stack="PostgreSQL + Redis", count=60)

    def inject(group: Processes) -> None:
        campaign.fault("2 beats + 2 workers")

    _run(
        campaign,
        database_url=clean_postgres_url,
        broker_url=redis_url,
        simulator=simulator,
        receiver=receiver,
        processes=processes,
        tmp_path=tmp_path,
        inject=inject,
        workers=2,
        beats=2,
    )
