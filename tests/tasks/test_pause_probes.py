"""How a pause ends: no claim while it holds, then one probe poll at a time until an answer
lifts it; a 429's pause simply ends. And the run of failed connections that makes a provider
`unreachable`. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tracker import db
from tracker.ops import overdue
from tracker.settings import Settings
from tracker.tasks import pauses, polling, register
from tracker.tasks.decide import PauseCause, ProviderPause

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _claim(url: str, at: datetime) -> int:
    with db.session_scope(url) as session:
        claims = polling.claim_due_tasks(session, now=at, limit=100, lease_s=60, batch_size=50)
    return sum(len(claim.row_ids) for claim in claims)


def _setup(url: str, cause: PauseCause, *, until: datetime) -> None:
    with db.session_scope(url) as session:
        register.register(
            session,
            [f"t-{n}" for n in range(5)],
            first_poll_delay_s=0,
            now=NOW - timedelta(hours=1),
        )
        pauses.pause_provider(
            session, "tensorslab", ProviderPause(until, f"{cause} reason", cause), at=NOW
        )


@pytest.mark.parametrize("cause", [c for c in PauseCause if c.needs_probe], ids=str)
def test_after_the_pause_one_probe_at_a_time_until_an_answer_lifts_it(
    database_url: str, cause: PauseCause
) -> None:
    _setup(database_url, cause, until=NOW + timedelta(minutes=5))

    assert _claim(database_url, NOW + timedelta(minutes=1)) == 0, "paused: nothing is claimed"
    later = NOW + timedelta(minutes=6)
    assert _claim(database_url, later) == 1, "its time is up: one probe"
    assert _claim(database_url, later + timedelta(seconds=1)) == 0, "the probe is in flight"
    with db.read_scope(database_url) as session:
        [pause] = pauses.active_pauses(session, now=later)
    assert pause.cause == cause, "still paused until an answer says otherwise"

    with db.session_scope(database_url) as session:
        assert pauses.lift_expired_pause(session, "tensorslab", at=later) == cause
    with db.read_scope(database_url) as session:
        assert pauses.active_pauses(session, now=later) == []
    assert _claim(database_url, later + timedelta(seconds=2)) == 4, "the rest, at once"


def test_a_probe_that_meets_the_same_trouble_extends_the_same_pause(database_url: str) -> None:
    cause = PauseCause.UNAUTHORIZED
    _setup(database_url, cause, until=NOW + timedelta(minutes=5))
    later = NOW + timedelta(minutes=6)
    with db.session_scope(database_url) as session:
        started = pauses.pause_provider(
            session,
            "tensorslab",
            ProviderPause(later + timedelta(minutes=5), "again", cause),
            at=later,
        )
        # and a pause that started a new cause is news
        news = pauses.pause_provider(
            session,
            "tensorslab",
            ProviderPause(later + timedelta(hours=1), "no credits", PauseCause.NO_CREDITS),
            at=later,
        )
    assert (started, news) == (False, True)


def test_a_rate_limit_pause_just_ends(database_url: str) -> None:
    _setup(database_url, PauseCause.RATE_LIMITED, until=NOW + timedelta(seconds=30))
    assert _claim(database_url, NOW + timedelta(seconds=10)) == 0
    with db.read_scope(database_url) as session:
        assert pauses.active_pauses(session, now=NOW + timedelta(seconds=31)) == []
    assert _claim(database_url, NOW + timedelta(seconds=31)) == 5


def test_resume_makes_the_held_back_tasks_due_now(database_url: str) -> None:
    _setup(database_url, PauseCause.NO_CREDITS, until=NOW + timedelta(hours=1))
    with db.session_scope(database_url) as session:
        resumed = pauses.resume(session, "tensorslab", now=NOW)
    assert resumed.cause == "no_credits"
    assert resumed.tasks_due == 5  # fell due during the pause
    assert _claim(database_url, NOW) == 5


def test_tasks_that_fell_due_during_a_pause_are_due_now_after_resume_not_overdue(
    database_url: str,
) -> None:
    _setup(database_url, PauseCause.NO_CREDITS, until=NOW + timedelta(hours=1))
    later = NOW + timedelta(minutes=10)
    settings = Settings()
    with db.read_scope(database_url) as session:
        assert overdue.find_overdue(session, now=later, settings=settings, reason=False)
    with db.session_scope(database_url) as session:
        resumed = pauses.resume(session, "tensorslab", now=later)
    assert resumed.tasks_due == 5
    with db.read_scope(database_url) as session:
        assert overdue.find_overdue(session, now=later, settings=settings, reason=False) is None


def test_failed_connections_pause_only_after_the_threshold(database_url: str) -> None:
    def batch(first_s: float, last_s: float) -> ProviderPause | None:
        with db.session_scope(database_url) as session:
            return pauses.note_unreachable(
                session,
                "tensorslab",
                first_at=NOW + timedelta(seconds=first_s),
                last_at=NOW + timedelta(seconds=last_s),
                error="connection failed: refused",
                after_s=180,
                pause_s=120,
            )

    assert batch(0, 1) is None
    assert batch(100, 101) is None
    pause = batch(180, 181)
    assert pause is not None and pause.cause is PauseCause.UNREACHABLE
    assert pause.until == NOW + timedelta(seconds=301)
    assert pause.reason == "unreachable for 181 s: connection failed: refused"
    with db.session_scope(database_url) as session:
        pauses.note_reached(session, "tensorslab")  # one answer ends the run
    assert batch(200, 201) is None
