"""Beat's prune task: scheduled hourly, it prunes once a day with its counts in the log, and
retention 0 turns it off. Run in-process, as a worker runs it, against a real database."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from tests.conftest import Configure
from tests.tasks.history import counts, ended_task
from tracker import db
from tracker.db.clock import utc_now
from tracker.tasks import retention
from tracker.worker import celery_app


def test_the_beat_schedule_checks_retention_every_hour() -> None:
    entry = celery_app.app.conf.beat_schedule["prune"]
    assert entry["task"] == "tracker.prune" and entry["schedule"] == 3600.0
    assert celery_app.app.conf.task_routes["tracker.prune"]["queue"] == "tracker"


def test_the_prune_task_runs_once_a_day_and_logs_what_it_removed(
    database_url: str, configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    configure(TRACKER_DATABASE_URL=database_url)
    with db.session_scope() as session:
        ended_task(session, "year-old", ended_at=utc_now() - timedelta(days=365))
        ended_task(session, "last-week", ended_at=utc_now() - timedelta(days=7))
    caplog.set_level(logging.INFO, logger="tracker.tasks.retention")

    assert celery_app.prune() == 1
    assert celery_app.prune() == 0, "today's prune ran already"

    [line] = [r.getMessage() for r in caplog.records if r.name == "tracker.tasks.retention"]
    assert line.startswith("retention: pruned 1 tasks that ended before ")
    assert "(1 transitions, 1 deliveries, 1 attempts, 1 webhook subscriptions;" in line
    with db.read_scope() as session:
        assert counts(session)["tasks"] == 1
        assert retention.pruned_total(session) == 1


def test_retention_zero_keeps_everything(database_url: str, configure: Configure) -> None:
    configure(TRACKER_DATABASE_URL=database_url, TRACKER_RETENTION_DAYS=0)
    with db.session_scope() as session:
        ended_task(session, "year-old", ended_at=utc_now() - timedelta(days=365))
    assert celery_app.prune() == 0
    with db.read_scope() as session:
        assert counts(session)["tasks"] == 1
