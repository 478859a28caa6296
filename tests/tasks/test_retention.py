"""Retention and forget, on SQLite and PostgreSQL: exactly the tasks that ended before the
cutoff go, with their whole history; nothing tracked, nothing with a delivery still pending."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.tasks.history import LOOPBACK, counts, ended_task
from tracker import db
from tracker.db.models import DeliveryAttempt, TrackedTask, WebhookDelivery
from tracker.errors import InvalidInput, TaskStillTracked, UnknownTask
from tracker.tasks import forget, register, retention
from tracker.tasks.erase import Erased
from tracker.webhooks import endpoints
from tracker.webhooks.events import TEST_EVENT
from tracker.webhooks.outbox import new_message_id

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=100)
RECENT = NOW - timedelta(days=10)
CUTOFF = NOW - timedelta(days=90)


def _task_ids(url: str) -> set[str]:
    with db.read_scope(url) as session:
        return set(session.scalars(select(TrackedTask.task_id)))


def _history(url: str) -> None:
    """Two old ended tasks (delivered, failed), one old with a retry pending, one old held for
    a disabled endpoint, one recent, one still tracked."""
    with db.session_scope(url) as session:
        ended_task(session, "old-delivered", ended_at=OLD)
        ended_task(session, "old-failed", ended_at=OLD - timedelta(days=30))
        ended_task(session, "old-pending", ended_at=OLD, delivery="pending")
        ended_task(session, "old-held", ended_at=OLD, delivery="held")
        ended_task(session, "recent", ended_at=RECENT)
        register.register(session, ["live"], first_poll_delay_s=5, now=OLD)


def test_prune_removes_exactly_what_ended_before_the_cutoff(database_url: str) -> None:
    url = database_url
    _history(url)
    with db.read_scope(url) as session:
        before = counts(session)
    assert before == {
        "tasks": 6,
        "transitions": 5,
        "deliveries": 5,
        "attempts": 5,
        "subscriptions": 5,
    }

    report = retention.prune(lambda: db.session_scope(url), cutoff=CUTOFF, now=NOW, batch_size=1)

    # old-delivered, old-failed, and old-held (its held delivery failed first) go; old-pending
    # (a retry to come), recent and live stay.
    assert _task_ids(url) == {"old-pending", "recent", "live"}
    with db.read_scope(url) as session:
        after = counts(session)
        pending = session.scalars(select(WebhookDelivery.status)).all()
    assert after == {
        "tasks": 3,
        "transitions": 2,
        "deliveries": 2,
        "attempts": 2,
        "subscriptions": 2,
    }
    assert sorted(pending) == ["delivered", "pending"]  # recent's, and old-pending's retry
    assert report.erased == Erased(3, 3, 3, 3, 3)
    assert (report.erased.tasks, report.held_failed, report.kept_pending) == (3, 1, 1)
    with db.read_scope(url) as session:
        assert retention.pruned_total(session) == 3


def test_a_dry_run_counts_the_same_and_changes_nothing(database_url: str) -> None:
    url = database_url
    _history(url)
    with db.read_scope(url) as session:
        before = counts(session)

    dry = retention.prune(lambda: db.session_scope(url), cutoff=CUTOFF, now=NOW, dry_run=True)

    with db.read_scope(url) as session:
        assert counts(session) == before
        assert retention.pruned_total(session) == 0
        statuses = sorted(session.scalars(select(WebhookDelivery.status)).all())
    assert statuses.count("pending") == 2, "the held delivery is still pending"
    real = retention.prune(lambda: db.session_scope(url), cutoff=CUTOFF, now=NOW)
    assert (dry.erased, dry.held_failed, dry.kept_pending) == (
        real.erased,
        real.held_failed,
        real.kept_pending,
    )


@pytest.mark.parametrize(
    "value",
    ["ninety days", "90", "-5d", "5x", "", "2026-13-01", "1e999d"],
)
def test_nonsense_durations_are_one_clear_line(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        retention.cutoff_from(value, now=NOW)
    assert "--older-than" in str(caught.value) and "\n" not in str(caught.value)


def test_a_cutoff_in_the_future_is_refused() -> None:
    with pytest.raises(InvalidInput, match="in the future"):
        retention.cutoff_from("2027-01-01T00:00:00Z", now=NOW)
    assert retention.cutoff_from("90d", now=NOW) == CUTOFF
    assert retention.cutoff_from("2w", now=NOW) == NOW - timedelta(days=14)
    assert retention.cutoff_from("2026-09-01", now=NOW) == datetime(2026, 9, 1, tzinfo=UTC)


def test_the_daily_prune_runs_once_a_day_whoever_asks(database_url: str) -> None:
    url = database_url
    _history(url)
    clock = {"now": NOW}
    scope = lambda: db.session_scope(url)  # noqa: E731

    def run() -> retention.PruneReport | None:
        return retention.prune_if_due(scope, now=lambda _: clock["now"], retention_days=90)

    first = run()
    assert first is not None and first.erased.tasks == 3
    assert run() is None, "a second beat (or a restarted one) the same day prunes nothing"
    clock["now"] = NOW + timedelta(hours=24)
    assert run() is not None, "the next day it runs again"
    assert (
        retention.prune_if_due(scope, now=lambda _: NOW + timedelta(days=9), retention_days=0)
        is None
    )


@pytest.mark.postgres
def test_two_beats_pruning_at_the_same_moment_prune_once(clean_postgres_url: str) -> None:
    url = clean_postgres_url
    _history(url)
    results: list[retention.PruneReport | None] = []

    def beat() -> None:
        results.append(
            retention.prune_if_due(
                lambda: db.session_scope(url), now=lambda _: NOW, retention_days=90
            )
        )

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    done = [report for report in results if report is not None]
    assert len(results) == 2 and len(done) == 1
    assert done[0].erased.tasks == 3
    with db.read_scope(url) as session:
        assert retention.pruned_total(session) == 3


def test_forget_erases_one_ended_task_and_its_whole_history(database_url: str) -> None:
    url = database_url
    _history(url)
    with db.read_scope(url) as session:
        before = counts(session)

    with db.session_scope(url) as session:
        forgotten = forget.forget(session, "old-pending")  # its unsent delivery goes too

    assert forgotten.erased == Erased(1, 1, 1, 1, 1)
    with db.read_scope(url) as session:
        assert counts(session) == {name: count - 1 for name, count in before.items()}
    assert "old-pending" not in _task_ids(url)
    with db.session_scope(url) as session, pytest.raises(UnknownTask):
        forget.forget(session, "old-pending")


def test_forget_refuses_a_task_still_tracked(database_url: str) -> None:
    url = database_url
    _history(url)
    with db.read_scope(url) as session:
        before = counts(session)
    with db.session_scope(url) as session, pytest.raises(TaskStillTracked) as caught:
        forget.forget(session, "live")
    assert "untrack it first" in str(caught.value)
    with db.read_scope(url) as session:
        assert counts(session) == before


def _test_delivery(session: Session, *, created_at: datetime, status: str) -> int:
    """A `webhook.test` delivery (about no task) with one attempt, as `webhooks test` leaves."""
    endpoint = endpoints.add_endpoint(
        session, "http://127.0.0.1:9/hooks/tested", policy=LOOPBACK, now=created_at
    ).endpoint
    row = WebhookDelivery(
        message_id=new_message_id(),
        endpoint_id=endpoint.id,
        task_pk=None,
        event_type=TEST_EVENT,
        payload="{}",
        status=status,
        attempt_count=1,
        next_attempt_at=created_at + timedelta(hours=1) if status == "pending" else None,
        created_at=created_at,
        updated_at=created_at,
    )
    session.add(row)
    session.flush()
    session.add(
        DeliveryAttempt(
            delivery_id=row.id,
            attempted_at=created_at,
            duration_ms=3.0,
            status_code=200,
            succeeded=True,
        )
    )
    return row.id


def test_old_test_deliveries_go_with_their_attempts_and_recent_or_pending_ones_stay(
    database_url: str,
) -> None:
    url = database_url
    with db.session_scope(url) as session:
        ended_task(session, "old-delivered", ended_at=OLD)
        old = _test_delivery(session, created_at=OLD, status="delivered")
        old_pending = _test_delivery(session, created_at=OLD, status="pending")
        recent = _test_delivery(session, created_at=RECENT, status="failed")

    dry = retention.prune(lambda: db.session_scope(url), cutoff=CUTOFF, now=NOW, dry_run=True)
    report = retention.prune(lambda: db.session_scope(url), cutoff=CUTOFF, now=NOW, batch_size=1)

    # The task's delivery and attempt, and the old test delivery's.
    assert dry.erased == report.erased == Erased(1, 1, 2, 2, 1)
    with db.read_scope(url) as session:
        kept = session.scalars(select(WebhookDelivery.id).order_by(WebhookDelivery.id)).all()
        attempts = session.scalars(select(DeliveryAttempt.delivery_id)).all()
    assert kept == [old_pending, recent]
    assert sorted(attempts) == sorted([old_pending, recent])
    assert old not in attempts
