"""The shared token bucket on its real backends (Redis, SQLite, PostgreSQL), the settings that
configure it, and what a batch of polls does when no token comes: it defers, never drops.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import SIM_API_KEY
from tests.support import FAST_POLICY
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import ScheduledPoll, TrackedTask
from tracker.settings import Settings, SettingsError, get_settings
from tracker.tasks import polling, rate_limit, register
from tracker.testing.simulator import Simulator, Step, TaskScript
from tracker.testing.simulator.creates import RequestLog
from tracker.upstream.tensorslab import TensorsLabClient

RATE, BURST = 10.0, 4


def _bucket(kind: str, database_url: str, redis_url: str) -> rate_limit.TokenBucket:
    name = f"test:{uuid.uuid4().hex}"
    if kind == "redis":
        return rate_limit.RedisBucket.from_url(redis_url, name, rate_per_s=RATE, burst=BURST)
    return rate_limit.DatabaseBucket(
        lambda: db.session_scope(database_url), name, rate_per_s=RATE, burst=BURST
    )


@pytest.fixture(params=["redis", "database"])
def bucket(request: pytest.FixtureRequest, database_url: str) -> rate_limit.TokenBucket:
    from tracker.db import migrate

    migrate.upgrade(database_url)
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    return _bucket(request.param, database_url, redis_url)


def test_a_full_bucket_gives_its_burst_then_says_how_long_to_wait(
    bucket: rate_limit.TokenBucket,
) -> None:
    waits = [bucket.take() for _ in range(BURST + 1)]
    assert waits[:BURST] == [0.0] * BURST
    assert 0 < waits[BURST] <= 1 / RATE + 0.01


def test_threads_together_never_take_more_than_rate_times_window_plus_burst(
    bucket: rate_limit.TokenBucket,
) -> None:
    taken = RequestLog()
    until = time.monotonic() + 2.5

    def hammer() -> None:
        while time.monotonic() < until:
            if rate_limit.acquire(bucket, wait_s=0.5):
                taken.record("key")

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    times = taken.times("key")
    assert len(times) >= BURST + RATE  # it did hand out tokens, not just refuse
    for window_s in (0.5, 1.0, 2.0):
        # The times are taken after acquire returns: a little slack for the thread's wake-up.
        assert taken.max_in_window(window_s, "key") <= RATE * (window_s + 0.1) + BURST


def test_acquire_gives_up_rather_than_wait_longer_than_allowed(
    bucket: rate_limit.TokenBucket,
) -> None:
    for _ in range(BURST):
        assert rate_limit.acquire(bucket, wait_s=0)
    started = time.monotonic()
    assert not rate_limit.acquire(bucket, wait_s=0.01)
    assert time.monotonic() - started < 0.5


class _Unreachable:
    rate_per_s, burst = 1.0, 1

    def take(self) -> float:
        raise OSError("connection refused")


def test_a_bucket_that_cannot_be_asked_gives_no_token() -> None:
    assert not rate_limit.acquire(_Unreachable(), wait_s=1)


@pytest.mark.parametrize("value", ["0", "-1", "-0.5"])
def test_a_rate_of_zero_or_below_is_a_clear_settings_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("TENSORSLAB_MAX_REQUESTS_PER_S", value)
    get_settings.cache_clear()
    with pytest.raises(SettingsError) as caught:
        get_settings()
    message = str(caught.value)
    assert message.startswith("invalid settings: TENSORSLAB_MAX_REQUESTS_PER_S must be more")
    assert "\n" not in message


def test_unset_means_no_cap_and_the_burst_defaults_to_one_second() -> None:
    assert Settings().tensorslab_max_requests_per_s is None
    assert Settings(TENSORSLAB_MAX_REQUESTS_PER_S="").tensorslab_max_requests_per_s is None
    assert Settings(TENSORSLAB_MAX_REQUESTS_PER_S="2.5").rate_limit_burst == 3
    assert Settings(TENSORSLAB_MAX_REQUESTS_PER_S="0.2").rate_limit_burst == 1
    assert Settings(TENSORSLAB_MAX_REQUESTS_PER_S="5", TENSORSLAB_BURST="20").rate_limit_burst == 20
    with pytest.raises(Exception, match="TENSORSLAB_BURST"):
        Settings(TENSORSLAB_MAX_REQUESTS_PER_S="5", TENSORSLAB_BURST="0")


def test_the_bucket_is_in_redis_with_a_redis_broker_else_in_the_database(redis_url: str) -> None:
    assert rate_limit.make_bucket(Settings(), db.session_scope) is None
    capped: dict[str, Any] = {
        "TENSORSLAB_MAX_REQUESTS_PER_S": "5",
        "TENSORSLAB_API_KEY": "sk-secret",
    }
    in_redis = rate_limit.make_bucket(
        Settings(**capped, TRACKER_BROKER_URL=redis_url), db.session_scope
    )
    assert isinstance(in_redis, rate_limit.RedisBucket)
    in_db = rate_limit.make_bucket(Settings(**capped), db.session_scope)
    assert isinstance(in_db, rate_limit.DatabaseBucket)
    assert "sk-secret" not in rate_limit.bucket_name(Settings(**capped))


@pytest.fixture
def client(simulator: Simulator) -> Iterator[TensorsLabClient]:
    upstream = TensorsLabClient(base_url=simulator.base_url, api_key=SIM_API_KEY)
    yield upstream
    upstream.close()


def test_polls_without_a_token_are_deferred_due_again_and_nothing_is_sent(
    database_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    ids = [f"defer-{n}" for n in range(6)]
    simulator.add_tasks(TaskScript(task_id, (Step(2),)) for task_id in ids)
    with db.session_scope(database_url) as session:
        register.register(session, ids, now=utc_now(), first_poll_delay_s=0)
    with db.session_scope(database_url) as session:
        [claim] = polling.claim_due_tasks(
            session, now=utc_now(), limit=100, lease_s=60, batch_size=100
        )
    granted = iter([True, True])  # two tokens, then none

    summary = polling.poll_batch(
        claim,
        provider=client,
        session_scope=lambda: db.session_scope(database_url),
        policy=FAST_POLICY,
        fetch_margin_s=1,
        rate_limit=lambda wait_s: next(granted, False),
    )

    assert (summary.polled, summary.deferred, summary.skipped) == (2, 4, 0)
    assert simulator.stats()["queries"] == 2
    with db.session_scope(database_url) as session:
        rows = session.execute(
            select(
                TrackedTask.id,
                TrackedTask.poll_count,
                ScheduledPoll.lease_token,
                ScheduledPoll.next_poll_at,
            ).join(ScheduledPoll, ScheduledPoll.task_pk == TrackedTask.id)
        ).all()
    deferred = [row for row in rows if row.poll_count == 0]
    assert len(deferred) == 4
    assert all(row.lease_token is None for row in deferred)
    assert all(row.next_poll_at <= utc_now() for row in deferred)  # due again, not dropped
    with db.session_scope(database_url) as session:  # and the next claim takes them first
        [again] = polling.claim_due_tasks(
            session, now=utc_now(), limit=4, lease_s=60, batch_size=100
        )
    assert set(again.row_ids) == {row.id for row in deferred}  # the oldest due


def test_under_a_cap_a_tick_claims_only_what_the_bucket_can_serve(database_url: str) -> None:
    ids = [f"cap-{n}" for n in range(30)]
    with db.session_scope(database_url) as session:
        register.register(session, ids, now=utc_now(), first_poll_delay_s=0)
    settings = Settings(TENSORSLAB_MAX_REQUESTS_PER_S="5", TRACKER_TICK_INTERVAL_S="1")
    cap = polling.rate_limited_claims(settings)
    assert cap == 5 + 5
    with db.session_scope(database_url) as session:
        first = polling.claim_due_tasks(
            session, now=utc_now(), limit=2000, lease_s=60, batch_size=50, in_flight_cap=cap
        )
    with db.session_scope(database_url) as session:
        second = polling.claim_due_tasks(
            session, now=utc_now(), limit=2000, lease_s=60, batch_size=50, in_flight_cap=cap
        )
    assert sum(len(c.row_ids) for c in first) == 10
    assert second == []  # ten still in flight: nothing more until they are polled
