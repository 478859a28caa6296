"""`tracker watch` and `tracker stats` as a user runs them: output, exit codes, real databases."""

from __future__ import annotations

import _thread
import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from tests.support import run_cli
from tracker import db
from tracker.db.clock import utc_now
from tracker.tasks import register, untrack, watch


def _register(url: str, *task_ids: str) -> None:
    with db.session_scope(url) as session:
        register.register(session, list(task_ids), now=utc_now(), first_poll_delay_s=60)


def _untrack(url: str, task_id: str) -> None:
    with db.session_scope(url) as session:
        untrack.untrack(session, task_id, now=utc_now())


@pytest.fixture
def snapshots_taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], None]]:
    """`wait_for(n)` blocks until `watch` has taken n snapshots (the real use case runs)."""
    taken = 0
    changed = threading.Condition()
    real = watch.watch_snapshot

    def counting(*args: object, **kwargs: object) -> watch.WatchSnapshot:
        nonlocal taken
        snapshot = real(*args, **kwargs)  # type: ignore[arg-type]
        with changed:
            taken += 1
            changed.notify_all()
        return snapshot

    def wait_for(count: int) -> None:
        with changed:
            assert changed.wait_for(lambda: taken >= count, timeout=30), "watch never refreshed"

    monkeypatch.setattr(watch, "watch_snapshot", counting)
    yield wait_for


def test_help_lists_watch_and_stats() -> None:
    code, out, _ = run_cli("--help")
    assert code == 0 and " watch " in out and " stats " in out


def test_watching_tasks_that_are_already_terminal_prints_the_table_and_exits_0(
    cli_db: str,
) -> None:
    _register(cli_db, "vid-1", "vid-2")
    _untrack(cli_db, "vid-1")
    _untrack(cli_db, "vid-2")

    code, out, err = run_cli("watch", "vid-1", "vid-2")

    assert code == 0, err
    assert "2 of 2 tasks finished" in err  # not a terminal: the title on stderr, rows on stdout
    assert "vid-1" in out and "vid-2" in out and out.count("cancelled") == 2

    code, out, _ = run_cli("watch", "-", "--json", stdin="vid-2\n\nvid-1\n")
    assert code == 0
    snapshot = json.loads(out)
    assert snapshot["all_terminal"] is True
    assert [t["task"]["task_id"] for t in snapshot["tasks"]] == ["vid-2", "vid-1"]
    assert [t["status"] for t in snapshot["tasks"]] == ["cancelled", "cancelled"]
    assert datetime.fromisoformat(snapshot["tasks"][0]["in_status_since"])


def test_watch_ends_when_the_last_task_becomes_terminal(
    cli_db: str, snapshots_taken: Callable[[int], None]
) -> None:
    _register(cli_db, "done", "running")
    _untrack(cli_db, "done")

    def finish_while_watched() -> None:
        snapshots_taken(2)  # watch has shown the task live and refreshed once
        _untrack(cli_db, "running")

    thread = threading.Thread(target=finish_while_watched)
    thread.start()
    code, out, err = run_cli("watch", "done", "running", "--interval", "0.1", "--timeout", "60")
    thread.join()

    assert code == 0, err
    assert "2 of 2 tasks finished" in err and out.count("cancelled") == 2


def test_watch_gives_up_at_the_timeout(cli_db: str) -> None:
    _register(cli_db, "slow", "done")
    _untrack(cli_db, "done")

    code, out, err = run_cli("watch", "slow", "done", "--interval", "0.1", "--timeout", "0.3")

    assert code == 1
    assert "slow\tregistered" in out and "done\tcancelled" in out
    assert err.startswith("1 of 2 tasks finished\n")
    assert "error: timed out after 0.3 s; 1 of 2 tasks not finished: slow" in err

    code, out, err = run_cli("watch", "slow", "--json", "--interval", "0.1", "--timeout", "0.2")
    assert code == 1 and "timed out" in err
    assert json.loads(out)["all_terminal"] is False


def test_ctrl_c_stops_watching_with_exit_code_130(
    cli_db: str, snapshots_taken: Callable[[int], None]
) -> None:
    _register(cli_db, "forever")

    def press_ctrl_c() -> None:
        snapshots_taken(2)  # inside the refresh loop
        _thread.interrupt_main()

    thread = threading.Thread(target=press_ctrl_c)
    thread.start()
    code, out, err = run_cli("watch", "forever", "--interval", "0.1")
    thread.join()

    assert code == 130
    assert "Traceback" not in err and "Aborted" not in err
    assert "forever" in out and "registered" in out


def test_watching_an_unknown_or_bad_id_fails_before_showing_anything(cli_db: str) -> None:
    _register(cli_db, "known")

    code, out, err = run_cli("watch", "known", "missing")
    assert code == 3 and out == ""
    assert err.strip() == "error: no tracked tensorslab task with ID 'missing'"

    code, out, err = run_cli("watch", "bad id")
    assert code == 2 and out == "" and "contains whitespace" in err
    code, out, err = run_cli("watch", "-", stdin="\n")
    assert code == 2 and "no task ID given" in err


def test_stats_as_json_and_as_tables(cli_db: str) -> None:
    _register(cli_db, "a", "b", "c")
    _untrack(cli_db, "a")

    code, out, err = run_cli("stats", "--json")
    assert code == 0, err
    stats = json.loads(out)
    assert stats["counts"]["registered"] == 2 and stats["counts"]["cancelled"] == 1
    assert stats["counts"]["completed"] == 0 and stats["total"] == 3
    assert stats["polls_per_task"] is None and stats["detection_window_s"] is None

    code, out, _ = run_cli("stats", "--since", "1h", "--provider", "tensorslab")
    assert code == 0
    assert "tasks by status" in out and "registered since" in out
    assert "detection window" in out and "detection delay is at most this" in out

    code, _, err = run_cli("stats", "--since", "yesterday")
    assert code == 2 and "--since 'yesterday'" in err
    code, _, err = run_cli("stats", "--provider", "nope")
    assert code == 2 and "unknown provider 'nope'" in err


@pytest.mark.parametrize("since", ["99999999999d", "0001-01-01T00:00:00+05:00", "soonish"])
def test_stats_refuses_a_since_it_cannot_use(cli_db: str, since: str) -> None:
    code, out, err = run_cli("stats", "--since", since)
    assert code == 2 and f"--since {since!r}" in err and "Traceback" not in err
    assert out == ""
