"""A claim of scheduled polls writes the lease alone: the due time stays, PostgreSQL updates
the rows in place (no index entry written), and everything that reads a due time still sees a
leased row as due at its lease's end."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, text

from tests.support import reschedule
from tracker import db
from tracker.db.clock import database_now
from tracker.db.models import ScheduledPoll, TrackedTask
from tracker.metrics import read_database_figures
from tracker.ops.overdue import find_overdue
from tracker.settings import Settings
from tracker.tasks import polling, register

LEASE_S = 60.0


def _register_due(url: str, count: int, *, due_s_ago: float) -> None:
    with db.session_scope(url) as session:
        now = database_now(session)
        register.register(
            session, [f"video-{n}" for n in range(count)], now=now, first_poll_delay_s=0
        )
        reschedule(session, now - timedelta(seconds=due_s_ago))


def test_a_claim_leases_rows_in_place_and_leaves_their_due_time(clean_postgres_url: str) -> None:
    url = clean_postgres_url
    _register_due(url, 40, due_s_ago=30)
    with db.session_scope(url) as session:
        due_before = {
            pk: at
            for pk, at in session.execute(select(ScheduledPoll.task_pk, ScheduledPoll.next_poll_at))
        }
        now = database_now(session)
        claims = polling.claim_due_tasks(
            session, now=now, limit=100, lease_s=LEASE_S, batch_size=10
        )
        in_place = session.scalar(
            text("SELECT pg_stat_get_xact_tuples_hot_updated('scheduled_polls'::regclass)")
        )
    claimed = sorted(pk for claim in claims for pk in claim.row_ids)

    assert claimed == sorted(due_before)
    assert in_place == 40  # every leased row was updated on its page, no index entry written
    with db.session_scope(url) as session:
        rows = session.scalars(select(ScheduledPoll)).all()
        assert {row.task_pk: row.next_poll_at for row in rows} == due_before
        assert {row.lease_expires_at for row in rows} == {now + timedelta(seconds=LEASE_S)}
        # Claimed once, not again while the lease holds.
        assert (
            polling.claim_due_tasks(
                session, now=database_now(session), limit=100, lease_s=LEASE_S, batch_size=10
            )
            == []
        )


def test_a_leased_row_reads_as_due_at_its_leases_end(database_url: str) -> None:
    """The task's next poll, overdue tasks and the due gauge see a claimed row as they did when
    a claim moved the due time: due again when the lease ends."""
    _register_due(database_url, 3, due_s_ago=30)  # overdue: due 30 s ago, nobody claimed them
    settings = Settings(database_url=database_url)
    with db.session_scope(database_url) as session:
        now = database_now(session)
        assert find_overdue(session, now=now, settings=settings, reason=False) is not None
        polling.claim_due_tasks(session, now=now, limit=100, lease_s=LEASE_S, batch_size=10)
    lease_end = now + timedelta(seconds=LEASE_S)

    with db.session_scope(database_url) as session:
        later = now + timedelta(seconds=10)
        assert find_overdue(session, now=later, settings=settings, reason=False) is None
        figures = read_database_figures(session, now=later)
        assert (figures.due_tasks, figures.due_lag_s) == (0, 0.0)
        shown = [task.next_poll_at for task in session.scalars(select(TrackedTask))]
        assert shown == [lease_end] * 3
        after_lease = lease_end + timedelta(seconds=1)
        assert read_database_figures(session, now=after_lease).due_tasks == 3
        # The lease ran out (a worker died): claimable again.
        again = polling.claim_due_tasks(
            session, now=after_lease, limit=100, lease_s=LEASE_S, batch_size=10
        )
        assert sum(len(claim.row_ids) for claim in again) == 3
