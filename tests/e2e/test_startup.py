"""How `tracker worker`, `beat` and `up` start, as an operator sees it: one summary with the
passwords masked instead of Celery's banner and warnings, and `--log-file` receiving the logs
of every process, with the task ID on each line about a task and no secret anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import SIM_API_KEY
from tests.processes import Processes
from tracker import __version__, db
from tracker.db.clock import utc_now
from tracker.tasks import queries, register
from tracker.testing.receiver import WebhookReceiver
from tracker.testing.simulator import Simulator, Step, TaskScript
from tracker.webhooks import endpoints
from tracker.webhooks.guard import AddressPolicy

pytestmark = pytest.mark.e2e
DEADLINE_S = 90
PASSWORD = "hunter2-not-for-logs"  # PostgreSQL here trusts loopback: any password connects
CELERY_BANNER = ("-------------- celery@", "[tasks]", "celery beat v", "LocalTime ->")
CELERY_WARNINGS = ("SecurityWarning", "No hostname was supplied", "PendingDeprecation")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_worker_and_beat_print_one_summary_and_no_celery_banner(
    database_url: str, simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    url = make_url(database_url).set(password=PASSWORD).render_as_string(hide_password=False)
    group = processes(database_url=url, broker_url="filesystem://", simulator=simulator)
    group.start("worker", "worker", "--concurrency", "1")
    group.start("beat", "beat")
    group.wait_for_line("worker", "ready.", timeout_s=DEADLINE_S)
    group.wait_for_line("beat", "log level", timeout_s=DEADLINE_S)
    time.sleep(2)  # what beat and the worker print after starting, if anything, is in by now
    group.check_alive()

    worker, beat = group.log("worker", tail=100_000), group.log("beat", tail=100_000)
    assert worker.startswith(f"tracker {__version__} worker: consumes tracker-test-"), worker
    assert beat.startswith(f"tracker {__version__} beat: a tick every 0.3 s"), beat
    masked = make_url(url).render_as_string(hide_password=True)
    for output in (worker, beat):
        summary = _summary(output)
        assert summary["database"] == masked and ":***@" in masked
        assert summary["broker"].startswith("embedded (files in ")
        assert summary["upstream"] == simulator.base_url
        assert summary["log level"] == "INFO" and summary["logs"] == "stderr"
        assert PASSWORD not in output and SIM_API_KEY not in output
        for noise in CELERY_BANNER + CELERY_WARNINGS:
            assert noise not in output, (noise, output)
    assert _summary(worker)["concurrency"] == "1 process"


def _summary(output: str) -> dict[str, str]:
    """The summary's `  name  value` lines, by name."""
    rows = {}
    for line in output.splitlines()[1:]:
        if not line.startswith("  "):
            break
        name, value = line.strip().split("  ", 1)
        rows[name] = value.strip()
    return rows


def test_up_with_a_log_file_sends_every_process_there_with_task_ids(
    tmp_path: Path, simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    from tracker.db import migrate

    migrate.upgrade(url)
    simulator.add_task(
        TaskScript(
            "log-task-1",
            (Step(1, polls=1), Step(3)),
            urls=("https://cdn.example.invalid/log-task-1.mp4",),
        )
    )
    log_file = tmp_path / "logs" / "tracker.log"
    group = processes(database_url=url, broker_url="filesystem://", simulator=simulator)
    with WebhookReceiver() as receiver:
        with db.session_scope(url) as session:
            created = endpoints.add_endpoint(
                session,
                receiver.url + "/hook?token=receiver-secret-token",
                events=["task.completed"],
                now=utc_now(),
                policy=AddressPolicy.from_setting("127.0.0.0/8"),
            )
            register.register(session, ["log-task-1"], now=utc_now(), first_poll_delay_s=0)
        assert created.secret is not None  # a new endpoint: its secret, shown once
        receiver.set_secrets([created.secret])
        group.start("up", "up", "--no-api", "--concurrency", "1", "--log-file", str(log_file))
        receiver.wait_for(1, timeout_s=DEADLINE_S)
        deadline = time.monotonic() + DEADLINE_S
        while "webhook task.completed" not in _read(log_file):
            assert time.monotonic() < deadline, _read(log_file)
            group.check_alive()
            time.sleep(0.2)
        group.stop("up")
    with db.read_scope(url) as session:
        assert queries.get_task(session, "log-task-1").status.value == "completed"

    terminal = group.log("up", tail=100_000)  # what `tracker up` printed itself
    logs = _read(log_file)
    assert terminal.startswith(f"tracker {__version__} up: a poll worker with beat"), terminal
    assert _summary(terminal)["logs"] == f"appended to {log_file}"
    assert "task log-task-1" not in terminal  # the logs went to the file
    assert f"starting tracker {__version__} up" in logs  # the summary, as one line
    assert "polls@" in logs and "webhooks@" in logs  # both workers' lines
    assert "task log-task-1: registered -> pending" in logs
    assert "task log-task-1: pending -> completed" in logs
    delivered = [line for line in logs.splitlines() if "webhook task.completed" in line]
    assert delivered and all("task log-task-1" in line for line in delivered)
    assert "HTTP 200" in delivered[0]
    for secret in (SIM_API_KEY, created.secret, "receiver-secret-token"):
        assert secret not in logs and secret not in terminal
    for noise in CELERY_BANNER + CELERY_WARNINGS:
        assert noise not in logs and noise not in terminal, noise


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
