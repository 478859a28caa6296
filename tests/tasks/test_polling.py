"""Claiming and polling against the real simulator, on SQLite and PostgreSQL, in-process.

These drive `claim_due_tasks` and `poll_batch` directly with tiny intervals, so a whole
lifecycle plays out in a few rounds; `tests/e2e/test_workers.py` does the same through Celery
processes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from tests.conftest import SIM_API_KEY
from tests.support import FAST_POLICY, reschedule
from tracker import db
from tracker.db import clock
from tracker.db.clock import database_now, utc_now
from tracker.db.leasing import Claim
from tracker.db.models import ScheduledPoll, TrackedTask
from tracker.states import TaskStatus
from tracker.tasks import polling, queries, register, untrack
from tracker.tasks.schedule import PollPolicy
from tracker.testing.simulator import Faults, Simulator, Step, TaskScript
from tracker.upstream.tensorslab import TensorsLabClient


@pytest.fixture
def client(simulator: Simulator) -> Iterator[TensorsLabClient]:
    upstream = TensorsLabClient(base_url=simulator.base_url, api_key=SIM_API_KEY)
    yield upstream
    upstream.close()


def _register(url: str, *task_ids: str) -> None:
    with db.session_scope(url) as session:
        register.register(session, list(task_ids), now=utc_now(), first_poll_delay_s=0)


def _claim(url: str, *, limit: int = 100, lease_s: float = 60) -> list[Claim]:
    with db.session_scope(url) as session:
        return polling.claim_due_tasks(
            session, now=utc_now(), limit=limit, lease_s=lease_s, batch_size=10
        )


def _claim_one(url: str) -> Claim:
    """The next claim, waiting briefly for the task to fall due."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        claims = _claim(url)
        if claims:
            [claim] = claims
            return claim
        time.sleep(0.01)
    pytest.fail("no task fell due")


def _poll(url: str, claim: Claim, client: TensorsLabClient, policy: PollPolicy = FAST_POLICY):
    return polling.poll_batch(
        claim,
        provider=client,
        session_scope=lambda: db.session_scope(url),
        policy=policy,
        fetch_margin_s=1,
        concurrency=4,
    )


def _run_rounds(url: str, client: TensorsLabClient, *, until_s: float = 20) -> None:
    """Tick and poll until every task is terminal (or fail after `until_s`)."""
    deadline = time.monotonic() + until_s
    while time.monotonic() < deadline:
        for claim in _claim(url):
            _poll(url, claim, client)
        with db.session_scope(url) as session:
            if all(t.status.is_terminal for t in queries.list_tasks(session)):
                return
        time.sleep(0.02)
    pytest.fail("tasks did not all reach a terminal status in time")


def _moves(url: str, task_id: str) -> list[tuple[str, str]]:
    with db.session_scope(url) as session:
        return [(t.from_status.value, t.to_status.value) for t in queries.history(session, task_id)]


def test_scripted_tasks_end_completed_failed_and_not_found_with_one_transition_per_change(
    database_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    simulator.add_task(
        TaskScript(
            "video-ok",
            (Step(1, polls=1), Step(2, polls=1), Step(5, polls=1), Step(3)),
            urls=("https://cdn.example.invalid/ok.mp4",),
        )
    )
    simulator.add_task(TaskScript("video-bad", (Step(1, polls=1), Step(4)), message="nsfw prompt"))
    _register(database_url, "video-ok", "video-bad", "video-ghost")

    _run_rounds(database_url, client)

    with db.session_scope(database_url) as session:
        ok = queries.get_task(session, "video-ok")
        bad = queries.get_task(session, "video-bad")
        ghost = queries.get_task(session, "video-ghost")
    assert ok.status is TaskStatus.COMPLETED
    assert ok.result_urls == ("https://cdn.example.invalid/ok.mp4",)
    assert ok.details["resolution"] and ok.completed_at is not None and ok.next_poll_at is None
    assert bad.status is TaskStatus.FAILED and bad.upstream_message == "nsfw prompt"
    assert ghost.status is TaskStatus.NOT_FOUND
    assert _moves(database_url, "video-ok") == [
        ("registered", "pending"),
        ("pending", "processing"),
        ("processing", "uploading"),
        ("uploading", "completed"),
    ]
    assert _moves(database_url, "video-bad") == [("registered", "pending"), ("pending", "failed")]
    assert _moves(database_url, "video-ghost") == [("registered", "not_found")]

    # Terminal tasks are never polled again.
    asked = simulator.stats()["queries"]
    time.sleep(0.1)
    assert _claim(database_url) == []
    assert simulator.stats()["queries"] == asked


def test_answers_outside_the_contract_are_recorded_as_errors_never_as_transitions(
    database_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    simulator.add_task(TaskScript("video-1", (Step(2),)))
    simulator.set_faults(Faults(malformed_next=4))
    _register(database_url, "video-1")

    for _ in range(4):
        _poll(database_url, _claim_one(database_url), client, FAST_POLICY)
        with db.session_scope(database_url) as session:
            task = queries.get_task(session, "video-1")
        assert task.status is TaskStatus.REGISTERED
        assert task.last_error and task.last_error.startswith("contract_violation")
    assert _moves(database_url, "video-1") == []
    assert task.error_count == 4

    _poll(database_url, _claim_one(database_url), client)
    with db.session_scope(database_url) as session:
        task = queries.get_task(session, "video-1")
    assert task.status is TaskStatus.PROCESSING and task.last_error is None
    assert _moves(database_url, "video-1") == [("registered", "processing")]


def test_no_credits_pauses_all_polling_and_says_why(
    database_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    simulator.add_task(TaskScript("video-1", (Step(2),)))
    simulator.add_task(TaskScript("video-2", (Step(2),)))
    simulator.set_faults(Faults(code=9000, code_next=1))
    _register(database_url, "video-1")

    [claim] = _claim(database_url)
    _poll(database_url, claim, client)
    _register(database_url, "video-2")  # due right now, but the provider is paused

    assert _claim(database_url) == []
    with db.session_scope(database_url) as session:
        [pause] = queries.provider_pauses(session, now=utc_now())
        task = queries.get_task(session, "video-1")
    assert pause.provider == "tensorslab" and "insufficient_credits" in pause.reason
    assert pause.paused_until > utc_now() + timedelta(seconds=500)
    assert task.last_error is not None and "9000" in task.last_error
    assert task.status is TaskStatus.REGISTERED


def test_throttling_waits_at_least_retry_after(
    database_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    simulator.add_task(TaskScript("video-1", (Step(2),)))
    simulator.set_faults(Faults(throttle_next=1, retry_after_s=30))
    _register(database_url, "video-1")

    [claim] = _claim(database_url)
    polled_at = utc_now()
    _poll(database_url, claim, client)

    with db.session_scope(database_url) as session:
        task = queries.get_task(session, "video-1")
    assert task.next_poll_at is not None
    assert task.next_poll_at >= polled_at + timedelta(seconds=30)
    assert task.last_error is not None and task.last_error.startswith("throttled")


def test_two_claims_at_once_never_share_a_task(database_url: str) -> None:
    _register(database_url, *[f"video-{i}" for i in range(300)])
    results: list[list[Claim]] = []
    barrier = threading.Barrier(2)

    def claim() -> None:
        barrier.wait()
        results.append(_claim(database_url, limit=200))

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    first, second = ([pk for c in claims for pk in c.row_ids] for claims in results)
    assert set(first).isdisjoint(second)
    assert len(first) + len(second) == 300
    assert _claim(database_url) == []  # everything is leased now


def test_a_batch_that_lost_its_lease_writes_nothing(
    database_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    simulator.add_task(TaskScript("video-1", (Step(3),)))
    simulator.add_task(TaskScript("video-2", (Step(3),)))
    _register(database_url, "video-1", "video-2")
    [stale] = _claim(database_url)
    with db.session_scope(database_url) as session:
        untrack.untrack(session, "video-1", now=utc_now())
        # video-2's lease ran out and another tick took it.
        reschedule(session, utc_now() - timedelta(seconds=1), "video-2")
    [fresh] = _claim(database_url)

    summary = _poll(database_url, stale, client)

    assert summary.outcomes.get("completed", 0) == 0
    assert _moves(database_url, "video-1") == [("registered", "cancelled")]
    assert _moves(database_url, "video-2") == []
    _poll(database_url, fresh, client)
    assert _moves(database_url, "video-2") == [("registered", "completed")]


def test_a_poll_message_delivered_twice_polls_once(
    database_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    simulator.add_task(TaskScript("video-1", (Step(2),)))
    _register(database_url, "video-1")
    [claim] = _claim(database_url)

    first = _poll(database_url, claim, client)
    second = _poll(database_url, claim, client)

    assert (first.polled, second.polled) == (1, 0)
    assert simulator.task_state("video-1")["polls"] == 1
    assert _moves(database_url, "video-1") == [("registered", "processing")]


def test_expired_tasks_stop_being_polled(
    database_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    simulator.add_task(TaskScript("video-1", (Step(2),)))
    _register(database_url, "video-1")
    with db.session_scope(database_url) as session:
        session.execute(
            update(TrackedTask).values(
                created_at=utc_now() - timedelta(hours=2),
            )
        )
    [claim] = _claim(database_url)
    _poll(database_url, claim, client, PollPolicy(max_tracking_age_s=3600))

    assert _moves(database_url, "video-1") == [("registered", "expired")]
    with db.session_scope(database_url) as session:
        row = session.scalar(select(TrackedTask).where(TrackedTask.task_id == "video-1"))
        assert row is not None and row.next_poll_at is None
        assert session.get(ScheduledPoll, row.id) is None  # no due time, no lease


def test_a_batch_counts_the_tasks_it_ended_not_the_404s_still_in_grace(
    database_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    simulator.add_task(TaskScript("video-done", (Step(3),), urls=("https://cdn.example/d.mp4",)))
    _register(database_url, "video-done", "video-not-yet-known")
    policy = dataclasses.replace(FAST_POLICY, not_found_grace_s=3600)

    [claim] = _claim(database_url)
    summary = _poll(database_url, claim, client, policy)

    assert summary.polled == 2 and summary.outcomes == {"completed": 1, "missing": 1}
    assert summary.ended == 1  # the 404 within its grace period ended nothing


@pytest.mark.postgres
def test_due_times_and_leases_follow_the_database_clock_not_the_host_clock(
    clean_postgres_url: str,
    simulator: Simulator,
    client: TensorsLabClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = clean_postgres_url
    simulator.add_task(TaskScript("video-1", (Step(2),)))
    with db.session_scope(url) as session:
        register.register(session, ["video-1"], first_poll_delay_s=0)  # due now, by the database
        claims = polling.claim_due_tasks(
            session, now=database_now(session), limit=10, lease_s=60, batch_size=10
        )
    # This worker's host clock runs an hour ahead of the database's (and of beat's host).
    ahead = timedelta(hours=1)
    monkeypatch.setattr(clock, "utc_now", lambda: datetime.now(UTC) + ahead)

    [claim] = claims
    summary = _poll(url, claim, client)

    # With the host's clock the lease would look an hour over, and nothing would be polled.
    assert summary.polled == 1 and summary.skipped == 0
    with db.read_scope(url) as session:
        task = queries.get_task(session, "video-1")
        database_time = database_now(session)
    assert task.status is TaskStatus.PROCESSING
    assert task.last_polled_at is not None and task.next_poll_at is not None
    assert abs(task.last_polled_at - database_time) < timedelta(minutes=5)
    assert task.next_poll_at - database_time < timedelta(minutes=5)
