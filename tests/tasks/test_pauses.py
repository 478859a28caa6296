"""Provider pauses are one upsert: two batches that hit a pause at once both commit."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tracker import db
from tracker.db.models import ProviderPauseRow
from tracker.tasks.decide import PauseCause, ProviderPause
from tracker.tasks.pauses import pause_provider

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _pause(url: str) -> ProviderPauseRow | None:
    with db.read_scope(url) as session:
        return session.scalar(select(ProviderPauseRow))


@pytest.mark.postgres
def test_two_batches_pausing_at_once_both_commit_and_the_later_end_wins(
    clean_postgres_url: str,
) -> None:
    url = clean_postgres_url
    first_paused = threading.Event()
    first_may_commit = threading.Event()
    errors: list[BaseException] = []

    def first_batch() -> None:
        try:
            with db.session_scope(url) as session:
                until = NOW + timedelta(seconds=600)
                pause_provider(
                    session,
                    "tensorslab",
                    ProviderPause(until, "no credits", PauseCause.NO_CREDITS),
                    at=NOW,
                )
                first_paused.set()
                first_may_commit.wait(10)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)
            first_paused.set()

    thread = threading.Thread(target=first_batch)
    thread.start()
    assert first_paused.wait(10)
    # The second batch's pause waits on the first one's uncommitted row, then must update it.
    # With a SELECT-then-INSERT it inserted too and failed on the primary key, rolling back
    # its whole batch.
    timer = threading.Timer(0.5, first_may_commit.set)
    timer.start()
    with db.session_scope(url) as session:
        until = NOW + timedelta(seconds=900)
        pause_provider(
            session,
            "tensorslab",
            ProviderPause(until, "throttled", PauseCause.RATE_LIMITED),
            at=NOW,
        )
    thread.join(10)
    timer.cancel()
    assert errors == []
    stored = _pause(url)
    assert stored is not None
    assert (stored.paused_until, stored.reason) == (
        NOW + timedelta(seconds=900),
        "throttled",
    )


def test_a_shorter_pause_never_cuts_a_longer_one(database_url: str) -> None:
    with db.session_scope(database_url) as session:
        pause_provider(
            session,
            "tensorslab",
            ProviderPause(NOW + timedelta(hours=1), "no credits", PauseCause.NO_CREDITS),
            at=NOW,
        )
    with db.session_scope(database_url) as session:
        pause_provider(
            session,
            "tensorslab",
            ProviderPause(NOW + timedelta(seconds=5), "throttled", PauseCause.RATE_LIMITED),
            at=NOW,
        )
    stored = _pause(database_url)
    assert stored is not None
    assert (stored.paused_until, stored.reason) == (
        NOW + timedelta(hours=1),
        "no credits",
    )
    with db.session_scope(database_url) as session:
        pause_provider(
            session,
            "tensorslab",
            ProviderPause(NOW + timedelta(hours=2), "throttled", PauseCause.RATE_LIMITED),
            at=NOW,
        )
    stored = _pause(database_url)
    assert stored is not None
    assert (stored.paused_until, stored.reason) == (
        NOW + timedelta(hours=2),
        "throttled",
    )
