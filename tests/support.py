"""Helpers several test modules share: a fast poll policy, polling rounds run in-process until
tasks end, and the `tracker` command run through typer's CliRunner."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tracker import db
from tracker.cli.app import app
from tracker.db.clock import utc_now
from tracker.db.models import ScheduledPoll, TrackedTask
from tracker.tasks import polling, queries
from tracker.tasks.schedule import PollPolicy
from tracker.upstream import Provider

__all__ = ["FAST_POLICY", "poll_until_terminal", "reschedule", "run_cli"]

# Polls as fast as the tests can go: no quiet period, errors retried within 50 ms.
FAST_POLICY = PollPolicy(
    first_delay_s=0.0,
    min_interval_s=0.01,
    max_interval_s=0.02,
    error_max_backoff_s=0.05,
    no_credits_pause_s=600,
    not_found_grace_s=0.3,
    max_tracking_age_s=3600,
    quiet_until_s=0,
)

_runner = CliRunner()


def reschedule(session: Session, at: datetime | None, *task_ids: str) -> None:
    """The next poll of the live tasks `task_ids` (all live tasks: none given) is due `at`; with
    `at` None, they have none, as once a task has ended (set its status apart). A lease that
    would end later ends `at` too (its token stays: the batch holding it is now stale)."""
    chosen = select(TrackedTask.id).where(TrackedTask.task_id.in_(task_ids))
    where = [ScheduledPoll.task_pk.in_(chosen)] if task_ids else []
    if at is None:
        session.execute(delete(ScheduledPoll).where(*where))
        return
    session.execute(update(ScheduledPoll).where(*where).values(next_poll_at=at))
    session.execute(
        update(ScheduledPoll)
        .where(*where, ScheduledPoll.lease_expires_at > at)
        .values(lease_expires_at=at)
    )


def run_cli(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """`tracker ARGS...` in this process: (exit code, stdout, stderr)."""
    result = _runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def poll_until_terminal(
    url: str,
    provider: Provider | Mapping[str, Provider],
    *,
    task_ids: list[str] | None = None,
    policy: PollPolicy | Mapping[str, PollPolicy] = FAST_POLICY,
    until_s: float = 20,
) -> None:
    """Claim and poll, as ticks and workers would, until the tasks (default: all) are terminal."""
    deadline = time.monotonic() + until_s
    while time.monotonic() < deadline:
        with db.session_scope(url) as session:
            claims = polling.claim_due_tasks(
                session, now=utc_now(), limit=100, lease_s=60, batch_size=10
            )
        for claim in claims:
            polling.poll_batch(
                claim,
                provider=provider,
                session_scope=lambda: db.session_scope(url),
                policy=policy,
                fetch_margin_s=1,
            )
        with db.session_scope(url) as session:
            tasks = queries.list_tasks(session, limit=10_000)
        watched = [t for t in tasks if task_ids is None or t.task_id in task_ids]
        if watched and all(t.status.is_terminal for t in watched):
            return
        time.sleep(0.02)
    pytest.fail(f"tasks did not all reach a terminal status within {until_s} s")
