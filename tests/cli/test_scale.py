"""The `tracker` command with many tasks, run as a shell runs it (a child process, stdout piped):
list pages with a total and cursors, register summaries and --metadata, watch of many tasks,
and output that stays one record per line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import update

from tracker import __version__, db
from tracker.cli.observe import watch_view
from tracker.db.clock import database_now, utc_now
from tracker.db.models import TrackedTask
from tracker.tasks import register, untrack, watch

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _tracker(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real command in a child process, its stdout and stderr pipes (not a terminal)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "TENSORSLAB_"))}
    env = {**base, "TRACKER_DATABASE_URL": url, "TRACKER_DATA_DIR": str(Path.cwd() / "data")}
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _ids(count: int, prefix: str = "task") -> list[str]:
    return [f"{prefix}-{index:04d}" for index in range(count)]


def _register(url: str, task_ids: list[str]) -> None:
    with db.session_scope(url) as session:
        register.register(session, task_ids, now=utc_now(), first_poll_delay_s=3600)


def _rows(stdout: str) -> list[list[str]]:
    """Tab-separated records after the header line."""
    header, *lines = stdout.splitlines()
    assert header.split("\t")[0] == "task id", header
    return [line.split("\t") for line in lines]


def test_list_shows_the_total_and_pages_with_cursors(database_url: str) -> None:
    url = database_url
    _register(url, _ids(120))

    seen: list[str] = []
    args = ["list"]  # 50 a page by default
    hints = []
    for expected in (50, 50, 20):
        result = _tracker(url, *args)
        assert result.returncode == 0, result.stderr
        rows = _rows(result.stdout)
        assert len(rows) == expected
        seen += [row[0] for row in rows]
        assert f"{expected} of 120 tracked tasks (newest first)" in result.stderr
        hint = [line for line in result.stderr.splitlines() if line.startswith("next page:")]
        hints.append(hint)
        if hint:
            command = hint[0].removeprefix("next page: ").split()
            assert command[:3] == ["tracker", "list", "--cursor"]
            args = command[1:]
    assert [len(hint) for hint in hints] == [1, 1, 0]  # no hint after the last page
    assert seen == list(reversed(_ids(120)))  # newest first, none twice, none missed

    result = _tracker(url, "list", "--all")
    assert result.returncode == 0, result.stderr
    assert [row[0] for row in _rows(result.stdout)] == list(reversed(_ids(120)))
    assert "120 tasks listed" in result.stderr

    result = _tracker(url, "list", "--all", "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 120

    result = _tracker(url, "list", "--status", "completed", "--all", "--json")
    assert result.returncode == 0 and json.loads(result.stdout) == []


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "MjAyNi0xMi0wMlQwMToxMDoyMS4yMjYwMTcrMDA6MDB8",  # a real cursor, cut short
        "MjAyNi0xMi0wMlQwMToxMDoyMS4yMjYwMTcrMDU6MDB8MTIw",  # its time moved off UTC
        "!!!",
    ],
)
def test_a_cursor_that_tracker_did_not_issue_is_one_line_and_exit_2(
    database_url: str, cursor: str
) -> None:
    _register(database_url, _ids(3))
    result = _tracker(database_url, "list", "--cursor", cursor)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: invalid cursor")
    assert len(result.stderr.strip().splitlines()) == 1


def test_register_of_many_ids_prints_a_summary_and_lines_only_with_verbose(
    database_url: str,
) -> None:
    ids = _ids(300)
    result = _tracker(database_url, "register", "-", stdin="\n".join(ids))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["registered 300, already tracked 0"]

    more = ids[:150] + _ids(10, "new")
    result = _tracker(database_url, "register", "--verbose", *more)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "registered 10, already tracked 150"
    assert len(lines) == 161
    assert "already tracked task-0000 (status registered); nothing changed" in lines
    assert "registered new-0009" in lines

    result = _tracker(database_url, "register", "few-1", "few-2")  # a few: a line each
    assert result.stdout.splitlines() == [
        "registered few-1",
        "registered few-2",
        "registered 2, already tracked 0",
    ]


def test_register_metadata_is_stored_and_bad_metadata_stores_nothing(database_url: str) -> None:
    url = database_url
    result = _tracker(url, "register", "meta-1", "meta-2", "--metadata", '{"order": 42, "ü": [1]}')
    assert result.returncode == 0, result.stderr
    for task_id in ("meta-1", "meta-2"):
        shown = json.loads(_tracker(url, "status", task_id, "--json").stdout)
        assert shown["metadata"] == {"order": 42, "ü": [1]}

    too_big = json.dumps({"blob": "x" * (16 * 1024)})
    for metadata, says in (
        ("{order: 42}", "--metadata is not valid JSON"),
        ("[1, 2]", "--metadata must be a JSON object"),
        ('"text"', "--metadata must be a JSON object"),
        ('{"n": NaN}', "--metadata is not valid JSON: NaN is not JSON"),
        (too_big, "the limit is 16384 (16 KiB)"),
    ):
        result = _tracker(url, "register", "bad-1", "--metadata", metadata)
        assert result.returncode == 2, (metadata, result.stderr)
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr
    assert _tracker(url, "status", "bad-1").returncode == 3  # nothing stored


def test_watch_of_many_tasks_shows_counts_by_status_and_a_progress_bar(database_url: str) -> None:
    url = database_url
    ids = _ids(30)
    _register(url, ids)
    with db.session_scope(url) as session:
        for task_id in ids[:12]:
            untrack.untrack(session, task_id)

    # On a terminal: the live view is a bar and counts, not 30 rows.
    with db.read_scope(url) as session:
        snapshot = watch.watch_snapshot(session, ids, now=database_now(session))
    console = Console(width=100, force_terminal=True, color_system=None, record=True)
    console.print(watch_view(snapshot, live=True))
    shown = console.export_text()
    assert "12 of 30 tasks finished (40%)" in shown and "━" in shown
    assert "registered" in shown and "18" in shown and "cancelled" in shown
    assert "task-0029" not in shown

    # Into a pipe, at the timeout: the counts as records, the progress on stderr.
    result = _tracker(url, "watch", "-", "--timeout", "0", stdin="\n".join(ids))
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["status\ttasks", "registered\t18", "cancelled\t12"]
    assert result.stderr.startswith("12 of 30 tasks finished\n")

    # A few tasks keep a row each.
    result = _tracker(url, "watch", ids[0], ids[20], "--timeout", "0")
    assert [line.split("\t")[:2] for line in result.stdout.splitlines()[1:]] == [
        [ids[0], "cancelled"],
        [ids[20], "registered"],
    ]


def test_piped_output_keeps_long_ids_and_urls_whole_on_one_line(database_url: str) -> None:
    url = database_url
    long_id = "id-" + "x" * 197  # 200 characters
    long_url = "https://cdn.example.invalid/" + "/".join(["segment"] * 40) + "/video.mp4?sig=abc"
    other_url = "https://cdn.example.invalid/second.mp4"
    assert _tracker(url, "register", long_id).returncode == 0
    with db.session_scope(url) as session:
        session.execute(
            update(TrackedTask)
            .where(TrackedTask.task_id == long_id)
            .values(result_urls=[long_url, other_url], upstream_message="done " * 30)
        )

    result = _tracker(url, "list")
    assert result.returncode == 0, result.stderr
    [row] = _rows(result.stdout)
    assert row[0] == long_id and row[-1] == f"{long_url} {other_url}"

    result = _tracker(url, "status", long_id)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"task id\t{long_id}" in lines
    assert f"result urls\t{long_url} {other_url}" in lines

    result = _tracker(url, "watch", long_id, "--timeout", "0")
    assert any(line.startswith(f"{long_id}\tregistered\t") for line in result.stdout.splitlines())

    result = _tracker(url, "register", long_id)
    assert f"already tracked {long_id} (status registered); nothing changed" in result.stdout

    result = _tracker(url, "untrack", long_id)  # a message, not a table: as wide as it is
    assert result.stdout == f"untracked {long_id}: now cancelled\n"


def test_version(database_url: str) -> None:
    for flag in ("--version", "-V"):
        result = _tracker(database_url, flag)
        assert result.returncode == 0 and result.stdout == f"tracker {__version__}\n"
