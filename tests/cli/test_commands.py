"""The `tracker` command as a user types it: output, exit codes, and what ends up stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.conftest import Configure
from tests.support import reschedule, run_cli
from tracker import db
from tracker.db.models import TrackedTask
from tracker.states import TaskStatus


def _tracker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command in a child process, as a shell would run it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "TENSORSLAB_"))}
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        env={**base, "TRACKER_DATA_DIR": str(Path.cwd() / "data"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_lists_every_command_with_a_description() -> None:
    code, out, _ = run_cli("--help")
    assert code == 0
    for command in (
        "register", "status", "history", "list", "untrack",
        "worker", "beat", "up", "simulate", "demo", "db",
        "api", "tokens", "watch", "stats", "webhooks", "deliveries", "redeliver", "doctor",
    ):  # fmt: skip
        assert f" {command} " in out, command
    code, out, _ = run_cli("db", "--help")
    assert code == 0 and "upgrade" in out


def test_register_then_query_as_json(cli_db: str) -> None:
    code, out, _ = run_cli("register", "vid-1", "vid-2")
    assert code == 0
    assert "registered vid-1" in out and "registered vid-2" in out

    code, out, _ = run_cli("register", "vid-1")
    assert code == 0 and "already tracked vid-1" in out and "nothing changed" in out

    code, out, _ = run_cli("status", "vid-1", "--json")
    assert code == 0
    task = json.loads(out)
    assert task["task_id"] == "vid-1" and task["status"] == "registered"

    code, out, _ = run_cli("list", "--json", "--limit", "1")
    assert code == 0 and [t["task_id"] for t in json.loads(out)] == ["vid-2"]

    code, out, _ = run_cli("untrack", "vid-1")
    assert code == 0 and "now cancelled" in out
    code, out, _ = run_cli("history", "vid-1", "--json")
    assert code == 0
    [move] = json.loads(out)
    assert (move["from_status"], move["to_status"]) == ("registered", "cancelled")

    code, out, _ = run_cli("list", "--status", "cancelled")
    assert code == 0 and "vid-1" in out and "vid-2" not in out


def test_register_reads_ids_from_stdin(cli_db: str) -> None:
    code, out, _ = run_cli("register", "-", stdin="from-stdin-1\n\nfrom-stdin-2\r\n")
    assert code == 0
    code, out, _ = run_cli("list", "--json")
    assert sorted(t["task_id"] for t in json.loads(out)) == ["from-stdin-1", "from-stdin-2"]


def test_a_bad_id_is_refused_and_nothing_is_stored(cli_db: str) -> None:
    code, _, err = run_cli("register", "good-1", "bad id", "good-2")
    assert code == 2
    assert "task ID #2 'bad id' contains whitespace" in err
    code, out, _ = run_cli("list", "--json")
    assert json.loads(out) == []


def test_unknown_task_and_bad_status_filter(cli_db: str) -> None:
    code, _, err = run_cli("status", "missing-task")
    assert code == 3 and "no tracked tensorslab task with ID 'missing-task'" in err
    code, _, err = run_cli("list", "--status", "done")
    assert code == 2 and "done" in err


def test_an_unreachable_database_is_one_clear_line() -> None:
    result = _tracker(
        "list", env={"TRACKER_DATABASE_URL": "postgresql://tracker:secret@127.0.0.1:1/none"}
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot use the database at postgresql+psycopg://")
    assert "secret" not in result.stderr and "Traceback" not in result.stderr


def test_a_database_without_schema_says_to_run_db_upgrade() -> None:
    result = _tracker("status", "x")
    assert result.returncode == 1
    assert "run `tracker db upgrade` first" in result.stderr

    result = _tracker("db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert _tracker("register", "x").returncode == 0


def test_up_and_worker_refuse_to_poll_without_an_api_key() -> None:
    for command in ("up", "worker"):
        result = _tracker(command)
        assert result.returncode == 1
        assert "TENSORSLAB_API_KEY is not set" in result.stderr
        assert "Traceback" not in result.stderr


def test_an_unreachable_broker_is_one_clear_line(database_url: str) -> None:
    result = _tracker(
        "worker",
        env={
            "TRACKER_DATABASE_URL": database_url,
            "TRACKER_BROKER_URL": "redis://:hunter2@127.0.0.1:1/0",
            "TENSORSLAB_API_KEY": "key-that-must-not-leak",
        },
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot reach the broker at redis://")
    assert "hunter2" not in result.stderr and "key-that-must-not-leak" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TRACKER_POLL_MIN_INTERVAL_S", "soon", "TRACKER_POLL_MIN_INTERVAL_S"),
        ("TRACKER_POLL_MAX_INTERVAL_S", "1", "is larger than TRACKER_POLL_MAX_INTERVAL_S"),
        ("TRACKER_TICK_INTERVAL_S", "-1", "TRACKER_TICK_INTERVAL_S"),
        ("TRACKER_BROKER_URL", "amqp://x", "TRACKER_BROKER_URL must be"),
        ("TRACKER_DATABASE_URL", "mysql://x", "TRACKER_DATABASE_URL must be"),
        ("TENSORSLAB_BASE_URL", "api.tensorslab.com", "must start with http"),
        ("TENSORSLAB_AUTH_SCHEME", "Bear er", "one word"),
        ("TRACKER_POLL_LEASE_S", "10", "TRACKER_POLL_LEASE_S (10) must be at least 70 s"),
        ("TRACKER_WEBHOOK_LEASE_S", "10", "TRACKER_WEBHOOK_LEASE_S (10) must be at least 30 s"),
        ("TRACKER_WEBHOOK_RETRY_SCHEDULE_S", "5,soon", "comma-separated seconds"),
        ("TRACKER_WEBHOOK_ALLOWED_NETWORKS", "localhost", "TRACKER_WEBHOOK_ALLOWED_NETWORKS"),
    ],
)
def test_invalid_settings_are_refused_loudly(
    configure: Configure, name: str, value: str, message: str
) -> None:
    configure(**{name: value})
    code, _, err = run_cli("list")
    assert code == 1
    assert err.startswith("error: invalid settings") and message in err


def test_settings_can_come_from_a_dot_env_file(database_url: str) -> None:
    Path(".env").write_text(f"TRACKER_DATABASE_URL={database_url}\n")
    code, out, err = run_cli("register", "from-dotenv")
    assert code == 0, err
    code, out, _ = run_cli("status", "from-dotenv", "--json")
    assert json.loads(out)["status"] == "registered"


def test_webhook_commands_show_the_secret_once_and_refuse_bad_input(
    cli_db: str, configure: Configure
) -> None:
    code, _, err = run_cli("webhooks", "add", "http://10.0.0.5/hook")
    assert code == 2 and "private address; refused" in err
    code, _, err = run_cli("webhooks", "add", "ftp://hooks.example/x")
    assert code == 2 and "http" in err

    configure(TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
    code, out, _ = run_cli("webhooks", "add", "http://127.0.0.1:9/hook", "--json")
    assert code == 0
    created = json.loads(out)
    assert created["secret"].startswith("whsec_")
    assert created["endpoint"]["events"] == ["task.completed", "task.failed"]
    code, out, _ = run_cli("webhooks", "list", "--json")
    assert code == 0 and created["secret"] not in out
    assert [e["url"] for e in json.loads(out)] == ["http://127.0.0.1:9/hook"]

    code, out, _ = run_cli("register", "vid-1", "--webhook", "http://127.0.0.1:9/one")
    assert code == 0 and "signing secret (shown once" in out
    code, out, _ = run_cli("untrack", "vid-1")
    code, out, _ = run_cli("deliveries", "--task", "vid-1", "--json")
    [pending] = json.loads(out)
    assert (pending["event_type"], pending["status"]) == ("task.cancelled", "pending")
    code, _, err = run_cli("redeliver", str(pending["id"]))
    assert code == 4 and "still pending" in err
    code, out, _ = run_cli("deliveries", "show", pending["message_id"], "--json")
    assert code == 0 and json.loads(out)["attempts"] == []

    code, _, err = run_cli("webhooks", "disable", "99")
    assert code == 3 and "no webhook endpoint with ID 99" in err


def test_register_with_a_refused_webhook_stores_nothing(cli_db: str) -> None:
    code, _, err = run_cli("register", "vid-1", "--webhook", "http://169.254.169.254/x")
    assert code == 2 and "link-local" in err
    code, out, _ = run_cli("list", "--json")
    assert json.loads(out) == []


def test_registering_a_tracked_task_with_a_new_webhook_says_it_was_added(
    cli_db: str, configure: Configure
) -> None:
    configure(TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
    run_cli("register", "vid-1")

    code, out, _ = run_cli("register", "vid-1", "--webhook", "http://127.0.0.1:9/new")
    assert code == 0 and "signing secret (shown once" in out
    assert "already tracked vid-1 (status registered); webhook added" in out
    code, out, _ = run_cli("register", "vid-1", "--webhook", "http://127.0.0.1:9/new")
    assert "signing secret" not in out and "nothing changed" in out


def test_untracking_a_finished_task_is_a_conflict_as_in_the_api(cli_db: str) -> None:
    assert run_cli("register", "done", "cancel-me")[0] == 0
    with db.session_scope(cli_db) as session:  # as if a worker had seen it complete
        session.execute(
            update(TrackedTask)
            .where(TrackedTask.task_id == "done")
            .values(status=TaskStatus.COMPLETED.value)
        )
        reschedule(session, None, "done")
    code, out, err = run_cli("untrack", "done")
    assert code == 4 and out == ""
    assert err.strip() == "error: task 'done' is already completed; nothing to stop"
    assert run_cli("untrack", "cancel-me")[0] == 0
    code, out, _ = run_cli("untrack", "cancel-me")  # cancelling again changes nothing
    assert code == 0 and "already cancelled; nothing changed" in out
