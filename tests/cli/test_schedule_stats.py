"""`tracker stats --schedule` as a user runs it: the learned buckets as a table and as JSON,
on SQLite and PostgreSQL; a bad setting or a flag that does not apply is one line."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from tests.support import run_cli
from tests.tasks.history import completed_task
from tracker import db
from tracker.db.clock import utc_now
from tracker.settings import Settings
from tracker.tasks import learning
from tracker.tasks.schedule import policies_by_provider

HD = {"source": "seedancev2", "resolution": "1080p", "duration": 10}
SD = {"source": "seedancev2", "resolution": "720p", "duration": 5}


def _ended(
    session: Session,
    task_id: str,
    *,
    at: datetime,
    details: dict[str, Any] | None = None,
    unfinished_s: float = 290.0,
    completed_s: float = 300.0,
) -> None:
    completed_task(
        session,
        task_id,
        at=at,
        details=HD if details is None else details,
        unfinished_s=unfinished_s,
        completed_s=completed_s,
    )


def _refresh(url: str) -> None:
    with db.session_scope(url) as session:
        learning.refresh(session, now=utc_now(), policies=policies_by_provider(Settings()), lag_s=0)


def test_stats_schedule_shows_the_learned_buckets(cli_db: str, configure: Any) -> None:
    start = utc_now() - timedelta(hours=1)
    with db.session_scope(cli_db) as session:
        for n in range(25):
            _ended(
                session,
                f"hd{n}",
                at=start + timedelta(seconds=n),
                unfinished_s=290 + n,
                completed_s=300 + n,
            )
        for n in range(3):
            _ended(session, f"sd{n}", at=start, details=SD, unfinished_s=140, completed_s=150)
    _refresh(cli_db)

    code, out, _ = run_cli("stats", "--schedule", "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["schedule"] == "adaptive"
    hd, sd = shown["buckets"]  # in bucket order: 1080p before 720p
    assert (hd["resolution"], hd["duration_s"], hd["samples"], hd["kept"]) == ("1080p", 10, 25, 25)
    assert hd["p01_s"] == 295.0 and hd["early_age_s"] == hd["second_poll_at_age_s"] == 265.5
    assert (sd["samples"], sd["early_age_s"], sd["second_poll_at_age_s"]) == (3, None, None)

    code, out, err = run_cli("stats", "--schedule")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split("\t")[:5] == ["provider", "model", "resolution", "duration", "samples"]
    assert lines[1].split("\t") == [
        "tensorslab",
        "seedancev2",
        "1080p",
        "10s",
        "25",
        "4m 55s",
        "4m 57s",
        "5m 07s",
        "5m 17s",
        "4m 25s",
        "4m 25s",
    ]
    assert lines[2].split("\t")[-2:] == ["-", "default"]
    assert "TRACKER_POLL_SCHEDULE=adaptive" in err

    configure(TRACKER_POLL_SCHEDULE="fixed")
    code, out, _ = run_cli("stats", "--schedule", "--json")
    assert json.loads(out)["buckets"][0]["second_poll_at_age_s"] is None


def test_stats_schedule_with_nothing_learned(cli_db: str) -> None:
    code, out, err = run_cli("stats", "--schedule", "--provider", "tensorslab-image")
    assert code == 0 and out.splitlines()[1:] == []
    assert "learned buckets (0;" in err
    assert "no bucket has learned an early age yet: a bucket needs 20 completed tasks" in err
    assert "until then every task follows the default schedule" in err


def test_an_unknown_schedule_is_one_clear_line(cli_db: str, configure: Any) -> None:
    configure(TRACKER_POLL_SCHEDULE="smart")
    code, _, err = run_cli("stats", "--schedule")
    assert code == 1
    assert err.strip() == (
        "error: invalid settings: TRACKER_POLL_SCHEDULE must be adaptive or fixed, got 'smart'"
    )


def test_since_does_not_apply_to_the_schedule(cli_db: str) -> None:
    code, out, err = run_cli("stats", "--schedule", "--since", "1h")
    assert code == 2 and out == ""
    assert err.strip() == "error: --since does not apply to --schedule (the learned buckets)"
