"""The adaptive schedule end to end, in-process: tasks of one bucket finish at the simulator and
train it; a later task of that bucket is not polled between its first poll and the bucket's
early age, while a task of an untrained bucket is polled as usual. On SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests.conftest import SIM_API_KEY, Configure
from tests.support import FAST_POLICY
from tests.tasks.history import completed_task
from tracker import db
from tracker.db.clock import utc_now
from tracker.tasks import learning, polling, queries, register
from tracker.tasks.adaptive import Bucket
from tracker.testing.simulator import Simulator, Step, TaskScript
from tracker.upstream.names import VIDEO_PROVIDER
from tracker.upstream.tensorslab import TensorsLabClient
from tracker.worker import celery_app

# Polls every 0.05-0.1 s: a task's whole life plays out in seconds.
POLICY = dataclasses.replace(FAST_POLICY, min_interval_s=0.05, max_interval_s=0.1)
HD: dict[str, str | int] = {"source": "seedancev2", "resolution": "1080p", "duration": 10}
SD: dict[str, str | int] = {"source": "seedancev2", "resolution": "720p", "duration": 5}
HD_BUCKET = Bucket("tensorslab", "seedancev2", "1080p", 10)


@pytest.fixture
def client(simulator: Simulator) -> Iterator[TensorsLabClient]:
    upstream = TensorsLabClient(base_url=simulator.base_url, api_key=SIM_API_KEY)
    yield upstream
    upstream.close()


def _start(
    url: str, simulator: Simulator, task_id: str, details: dict[str, str | int], run_s: float
) -> None:
    simulator.add_task(
        TaskScript(
            task_id=task_id,
            steps=(Step(status=2, after_s=run_s), Step(status=3)),
            details=details,
        )
    )
    with db.session_scope(url) as session:
        register.register(session, [task_id], first_poll_delay_s=0)


def _poll_until_ended(
    url: str,
    client: TensorsLabClient,
    task_ids: list[str],
    *,
    learned: learning.LearnedEarlyAges | None,
) -> dict[str, list[float]]:
    """Tick and poll, as beat and workers do, until the tasks have ended (generous deadline).
    Returns the age of each poll of each task (a round polls a task at most once)."""
    polled_at: dict[str, list[float]] = {task_id: [] for task_id in task_ids}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with db.session_scope(url) as session:
            claims = polling.claim_due_tasks(
                session, now=utc_now(), limit=100, lease_s=60, batch_size=10
            )
        for claim in claims:
            polling.poll_batch(
                claim,
                provider=client,
                session_scope=lambda: db.session_scope(url),
                policy=POLICY,
                fetch_margin_s=1,
                concurrency=4,
                early_ages=learned,
            )
        with db.read_scope(url) as session:
            tasks = [queries.get_task(session, task_id) for task_id in task_ids]
        for task in tasks:
            if task.last_polled_at is not None and len(polled_at[task.task_id]) < task.poll_count:
                polled_at[task.task_id].append(
                    (task.last_polled_at - task.created_at).total_seconds()
                )
        if all(task.status.is_terminal for task in tasks):
            return polled_at
        time.sleep(0.01)
    pytest.fail("the tasks did not end within 60 s")


def test_a_trained_bucket_skips_the_polls_before_its_early_age(
    database_url: str,
    simulator: Simulator,
    client: TensorsLabClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    training = [f"train-{n}" for n in range(20)]
    for task_id in training:
        _start(database_url, simulator, task_id, HD, run_s=2.0)
    learned = learning.LearnedEarlyAges(every_s=0)
    _poll_until_ended(database_url, client, training, learned=learned)
    with db.session_scope(database_url) as session:
        report = learning.refresh(
            session, now=utc_now(), policies={VIDEO_PROVIDER: POLICY}, lag_s=0
        )
    assert report.learned == 20
    with db.read_scope(database_url) as session:
        early_s = learned(session)[HD_BUCKET]
    assert 1.5 <= early_s <= 2.2, "about 0.9 x 2 s, whatever the load"

    caplog.set_level(logging.INFO, logger="tracker.tasks.polling")
    _start(database_url, simulator, "trained", HD, run_s=early_s + 1.0)
    _start(database_url, simulator, "untrained", SD, run_s=early_s + 1.0)
    polled_at = _poll_until_ended(database_url, client, ["trained", "untrained"], learned=learned)

    with db.read_scope(database_url) as session:
        trained = queries.get_task(session, "trained")
        untrained = queries.get_task(session, "untrained")
    assert trained.status.value == untrained.status.value == "completed"
    assert (
        len(polled_at["trained"]) == trained.poll_count == simulator.task_state("trained")["polls"]
    )
    # Once at registration, then nothing until the last interval before the early age.
    first, second, *_ = polled_at["trained"]
    assert first < early_s - POLICY.max_interval_s <= second, polled_at
    assert len(polled_at["untrained"]) == untrained.poll_count  # every poll was seen
    messages = [record.getMessage() for record in caplog.records]
    assert (
        "task trained: bucket tensorslab seedancev2 1080p 10s: next poll at age "
        f"{early_s:.0f} s (learned early age)" in messages
    )
    assert (
        "task untrained: bucket tensorslab seedancev2 720p 5s: too few samples yet: the "
        "default schedule" in messages
    )


def test_after_the_first_poll_the_next_is_due_at_the_early_age(
    database_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    learned = {HD_BUCKET: 30.0}
    _start(database_url, simulator, "trained", HD, run_s=600)
    _start(database_url, simulator, "untrained", SD, run_s=600)
    with db.session_scope(database_url) as session:
        [claim] = polling.claim_due_tasks(
            session, now=utc_now(), limit=100, lease_s=60, batch_size=10
        )
    polling.poll_batch(
        claim,
        provider=client,
        session_scope=lambda: db.session_scope(database_url),
        policy=POLICY,
        fetch_margin_s=1,
        early_ages=lambda _: learned,
    )
    with db.read_scope(database_url) as session:
        trained = queries.get_task(session, "trained")
        untrained = queries.get_task(session, "untrained")
    assert trained.poll_count == untrained.poll_count == 1
    assert trained.next_poll_at is not None and untrained.next_poll_at is not None
    trained_at_s = (trained.next_poll_at - trained.created_at).total_seconds()
    assert 30.0 - POLICY.max_interval_s <= trained_at_s <= 30.0
    assert (untrained.next_poll_at - untrained.created_at).total_seconds() < 1.0


def test_the_fixed_schedule_reads_nothing_learned(database_url: str, configure: Configure) -> None:
    configure(TRACKER_DATABASE_URL=database_url, TRACKER_POLL_SCHEDULE="fixed")
    assert celery_app._learned_early_ages() is None
    assert celery_app.learn() == 0
    configure(TRACKER_POLL_SCHEDULE="adaptive")
    assert isinstance(celery_app._learned_early_ages(), learning.LearnedEarlyAges)


def test_beat_sends_learn_every_30_s_to_the_poll_queue() -> None:
    entry = celery_app.app.conf.beat_schedule["learn"]
    assert entry["task"] == "tracker.learn" and entry["schedule"] == learning.REFRESH_EVERY_S
    assert celery_app.app.conf.task_routes["tracker.learn"]["queue"] == "tracker"


def test_the_learn_task_learns_what_completed_a_while_ago(
    database_url: str, configure: Configure
) -> None:
    configure(TRACKER_DATABASE_URL=database_url)
    with db.session_scope(database_url) as session:
        completed_task(session, "done", at=utc_now() - timedelta(hours=1), details=HD)
        completed_task(session, "just-done", at=utc_now() - timedelta(seconds=300), details=HD)

    assert celery_app.learn() == 1, "the one that ended within the lease (and a refresh) waits"
    assert celery_app.learn() == 0
