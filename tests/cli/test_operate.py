"""`tracker resume`, `prune` and `forget` through the command, on SQLite and PostgreSQL: what
they print, their exit codes, and bad input that changes nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.conftest import Configure
from tests.support import run_cli
from tests.tasks.history import counts, ended_task
from tracker import db
from tracker.db.clock import utc_now
from tracker.tasks import register
from tracker.tasks.decide import PauseCause, ProviderPause
from tracker.tasks.pauses import pause_provider


def _old_and_new(url: str) -> None:
    now = utc_now()
    with db.session_scope(url) as session:
        ended_task(session, "ended-long-ago", ended_at=now - timedelta(days=200))
        ended_task(session, "retry-pending", ended_at=now - timedelta(days=200), delivery="pending")
        ended_task(session, "ended-lately", ended_at=now - timedelta(days=2))
        register.register(session, ["still-tracked"], first_poll_delay_s=5, now=now)


def _counts(url: str) -> dict[str, int]:
    with db.read_scope(url) as session:
        return counts(session)


def test_prune_dry_run_then_prune(cli_db: str) -> None:
    _old_and_new(cli_db)
    before = _counts(cli_db)

    code, out, err = run_cli("prune", "--older-than", "90d", "--dry-run")
    assert code == 0, err
    assert out.startswith("would remove 1 tasks that ended before ")
    assert "1 tasks kept for a pending delivery; nothing changed (--dry-run)" in out
    assert _counts(cli_db) == before

    code, out, err = run_cli("prune", "--json")  # TRACKER_RETENTION_DAYS: 90 by default
    assert code == 0, err
    report = json.loads(out)
    assert report["erased"] == {
        "tasks": 1,
        "transitions": 1,
        "deliveries": 1,
        "attempts": 1,
        "subscriptions": 1,
    }
    assert report["kept_pending"] == 1 and report["dry_run"] is False
    code, out, _ = run_cli("list", "--json")
    assert sorted(task["task_id"] for task in json.loads(out)) == [
        "ended-lately",
        "retry-pending",
        "still-tracked",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--older-than", "a while"), "is neither a duration (90d, 12h, 2w) nor an ISO time"),
        (("--older-than", "-3d"), "is neither a duration"),
        (("--older-than", "2999-01-01"), "is a cutoff in the future"),
    ],
)
def test_prune_refuses_bad_input_and_changes_nothing(
    cli_db: str, args: tuple[str, ...], message: str
) -> None:
    _old_and_new(cli_db)
    before = _counts(cli_db)
    code, out, err = run_cli("prune", *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert out == "" and _counts(cli_db) == before


def test_prune_without_a_cutoff_when_retention_is_off(cli_db: str, configure: Configure) -> None:
    configure(TRACKER_DATABASE_URL=cli_db, TRACKER_RETENTION_DAYS=0)
    _old_and_new(cli_db)
    code, _, err = run_cli("prune")
    assert code == 2 and "retention is off (TRACKER_RETENTION_DAYS=0)" in err
    assert _counts(cli_db)["tasks"] == 4


def test_forget_erases_an_ended_task_and_refuses_a_tracked_one(cli_db: str) -> None:
    _old_and_new(cli_db)
    before = _counts(cli_db)

    code, _, err = run_cli("forget", "still-tracked")
    assert code == 4
    assert err.strip() == (
        "error: task 'still-tracked' is still tracked (registered): untrack it first "
        "(`tracker untrack`, or POST /v1/tasks/{task_id}/cancel), then forget it"
    )
    assert _counts(cli_db) == before

    code, out, err = run_cli("forget", "ended-lately")
    assert code == 0, err
    assert out.strip() == (
        "forgot ended-lately (cancelled): erased it with 1 transitions, 1 deliveries, "
        "1 attempts, 1 webhook subscriptions"
    )
    assert _counts(cli_db) == {name: count - 1 for name, count in before.items()}
    code, _, err = run_cli("forget", "ended-lately")
    assert code == 3 and "no tracked tensorslab task with ID 'ended-lately'" in err
    code, _, err = run_cli("forget", "bad id")
    assert code == 2


def test_resume_lifts_a_pause_and_refuses_when_none(cli_db: str) -> None:
    code, _, err = run_cli("resume")
    assert code == 4
    assert err.strip() == "error: polling of tensorslab is not paused; nothing to resume"

    now = utc_now()
    with db.session_scope(cli_db) as session:
        register.register(session, ["waiting"], first_poll_delay_s=5, now=now)
        pause_provider(
            session,
            "tensorslab",
            ProviderPause(now + timedelta(hours=1), "code 9000: no credits", PauseCause.NO_CREDITS),
            at=now,
        )
    code, _, err = run_cli("list")
    assert code == 0
    assert "polling of tensorslab is paused (no_credits) since " in err
    assert "code 9000: no credits; `tracker resume` lifts it now" in err
    code, out, _ = run_cli("status", "waiting")
    assert "paused" in out and "no_credits" in out
    code, out, _ = run_cli("list", "--json")
    assert [task["paused"]["cause"] for task in json.loads(out)] == ["no_credits"]

    code, out, err = run_cli("resume", "tensorslab")
    assert code == 0, err
    assert out.startswith("resumed polling of tensorslab (was paused: no_credits)")
    code, _, err = run_cli("list")
    assert "paused" not in err
    code, _, err = run_cli("resume", "not a provider")
    assert code == 2


def test_help_lists_the_new_commands() -> None:
    code, out, _ = run_cli("--help")
    assert code == 0
    for command in ("resume", "prune", "forget"):
        assert f" {command} " in out, command
