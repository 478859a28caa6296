"""`tracker demo`: the whole product on one machine, with nothing to set up, shown live.

It starts the bundled simulator with a few scripted video tasks and a local webhook receiver,
points tracker at both with fast demo timings, runs `tracker up` (worker and beat) in a child
process on the embedded defaults (SQLite and the filesystem broker, in a throw-away
`.tracker-demo/` folder), registers the tasks and shows them move through their states until
each ends completed, failed or not_found, and the signed webhooks arrive and verify.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tracker import db
from tracker.cli import tables
from tracker.db import migrate
from tracker.settings import get_settings
from tracker.states import TaskStatus
from tracker.tasks import queries, register
from tracker.testing.processes import ChildProcesses
from tracker.testing.receiver import ReceivedWebhook, WebhookReceiver
from tracker.testing.simulator import Simulator, TaskScript
from tracker.webhooks import endpoints
from tracker.webhooks.guard import AddressPolicy

__all__ = ["DEMO_TASKS", "EXPECTED", "run"]

DEMO_DIR = Path(".tracker-demo")
DEMO_API_KEY = "demo-key"

# Each upstream lifecycle as the simulator plays it (task_status: 1 pending, 2 processing,
# 5 uploading, 3 completed, 4 failed), timed in seconds so the demo takes under a minute.
DEMO_TASKS: list[dict[str, object]] = [
    {
        "taskid": "demo-720p-5s",
        "script": [
            {"status": 1, "after_s": 2},
            {"status": 2, "after_s": 5},
            {"status": 5, "after_s": 2},
            {"status": 3},
        ],
        "urls": ["https://cdn.example.invalid/demo-720p-5s.mp4"],
        "details": {"resolution": "720p", "duration": 5, "prompt": "a fox in the snow"},
    },
    {
        "taskid": "demo-1080p-10s",
        "script": [
            {"status": 1, "after_s": 3},
            {"status": 2, "after_s": 9},
            {"status": 5, "after_s": 3},
            {"status": 3},
        ],
        "urls": ["https://cdn.example.invalid/demo-1080p-10s.mp4"],
        "details": {"resolution": "1080p", "duration": 10, "prompt": "city lights at night"},
    },
    {
        "taskid": "demo-rejected",
        "script": [{"status": 1, "after_s": 2}, {"status": 2, "after_s": 4}, {"status": 4}],
        "message": "content moderation: the prompt was rejected",
    },
    {
        "taskid": "demo-appears-late",
        "missing_for_s": 4,
        "script": [{"status": 2, "after_s": 4}, {"status": 3}],
    },
]
NEVER_EXISTS = "demo-typo-in-id"
DEMO_EVENTS = ("task.completed", "task.failed", "task.not_found")
EXPECTED = {
    "demo-720p-5s": TaskStatus.COMPLETED,
    "demo-1080p-10s": TaskStatus.COMPLETED,
    "demo-rejected": TaskStatus.FAILED,
    "demo-appears-late": TaskStatus.COMPLETED,
    NEVER_EXISTS: TaskStatus.NOT_FOUND,
}


def _demo_environment(base_url: str) -> dict[str, str]:
    return {
        "TRACKER_DATA_DIR": str(DEMO_DIR.resolve()),
        "TRACKER_DATABASE_URL": f"sqlite:///{(DEMO_DIR / 'tracker.db').resolve()}",
        "TRACKER_BROKER_URL": "filesystem://",
        "TENSORSLAB_BASE_URL": base_url,
        "TENSORSLAB_API_KEY": DEMO_API_KEY,
        "TENSORSLAB_CONNECT_TIMEOUT_S": "2",
        "TENSORSLAB_READ_TIMEOUT_S": "5",
        "TRACKER_TICK_INTERVAL_S": "0.5",
        "TRACKER_POLL_FIRST_DELAY_S": "1",
        "TRACKER_POLL_QUIET_UNTIL_S": "0",  # the demo's videos take seconds, not minutes
        "TRACKER_POLL_MIN_INTERVAL_S": "1",
        "TRACKER_POLL_MAX_INTERVAL_S": "2",
        "TRACKER_NOT_FOUND_GRACE_S": "10",
        "TRACKER_POLL_LEASE_S": "15",
        # The receiver listens on loopback, which webhooks may not reach unless allowed.
        "TRACKER_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1",
    }


def run(console: Console, *, timeout_s: float) -> bool:
    """Run the demo; True when every task ended as expected."""
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    with Simulator(api_key=DEMO_API_KEY) as simulator, WebhookReceiver() as receiver:
        simulator.add_tasks(TaskScript.from_json(task) for task in DEMO_TASKS)
        os.environ.update(_demo_environment(simulator.base_url))
        get_settings.cache_clear()
        db.dispose_engine()
        settings = get_settings()
        console.print(
            f"[bold]tracker demo[/bold]: simulator at {simulator.base_url}, webhook receiver at "
            f"{receiver.url}, data in {DEMO_DIR}/ (SQLite + embedded broker)"
        )
        migrate.upgrade(settings.database_url)
        with db.session_scope() as session:
            created = endpoints.add_endpoint(
                session,
                receiver.url + "/hooks/tracker",
                events=DEMO_EVENTS,
                policy=AddressPolicy.from_settings(settings),
            )
            register.register(
                session,
                [*EXPECTED],
                first_poll_delay_s=settings.poll_first_delay_s,
                metadata={"source": "tracker demo"},
            )
        assert created.secret is not None  # a fresh database: the endpoint is new
        receiver.set_secrets([created.secret])
        console.print(
            f"webhook endpoint {created.endpoint.id} for {', '.join(DEMO_EVENTS)}; "
            "the receiver verifies each signature with its secret"
        )
        console.print(f"registered {len(EXPECTED)} tasks; starting worker and beat (tracker up)")
        with ChildProcesses(DEMO_DIR, os.environ.copy()) as children:
            worker = children.start("worker", "up", "--no-api", "--concurrency", "2", "-l", "INFO")
            finished = _watch(console, worker, receiver, timeout_s=timeout_s)
        log_path = children.log_path("worker")
        return _report(console, receiver, finished=finished, log_path=log_path)


def _watch(
    console: Console,
    worker: subprocess.Popen[bytes],
    receiver: WebhookReceiver,
    *,
    timeout_s: float,
) -> bool:
    """Show the tasks and the webhooks live; True once all are final and all webhooks came."""
    started = time.monotonic()
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            with db.read_scope() as session:
                tasks = queries.list_tasks(session, limit=len(EXPECTED))
            received = receiver.received
            elapsed = time.monotonic() - started
            live.update(
                Group(
                    tables.tasks_table(
                        sorted(tasks, key=lambda task: task.task_id),
                        title=f"tasks, live: {elapsed:4.1f} s",
                    ),
                    _webhooks_table(received),
                )
            )
            all_final = bool(tasks) and all(task.status.is_terminal for task in tasks)
            if all_final and len(received) >= len(EXPECTED):
                return True
            if worker.poll() is not None or elapsed > timeout_s:
                return False
            time.sleep(0.25)


def _webhooks_table(received: list[ReceivedWebhook]) -> Table:
    table = Table(title=f"webhooks received: {len(received)}", header_style="bold")
    for column in ("type", "task", "webhook-id", "signature"):
        table.add_column(column, overflow="fold")
    for item in received:
        data = item.payload.get("data", {}) if isinstance(item.payload, dict) else {}
        table.add_row(
            item.payload.get("type", "?") if isinstance(item.payload, dict) else "?",
            str(data.get("task_id", "?")),
            item.headers.get("webhook-id", "-"),
            Text("verified", "green") if item.verified else Text(str(item.verify_error), "red"),
        )
    return table


def _command() -> str:
    """How to run `tracker` from here: the virtualenv's script when it is not on PATH."""
    script = Path(sys.executable).parent / "tracker"
    if shutil.which("tracker") == str(script) or not script.exists():
        return "tracker"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _report(console: Console, receiver: WebhookReceiver, *, finished: bool, log_path: Path) -> bool:
    ok = finished
    with db.read_scope() as session:
        for task_id, expected in EXPECTED.items():
            task = queries.get_task(session, task_id)
            console.print(tables.history_table(task_id, queries.history(session, task_id)))
            if task.status is not expected:
                ok = False
                console.print(
                    Text(f"{task_id}: expected {expected.value}, got {task.status.value}", "red")
                )
    received = receiver.received
    got = sorted(
        (item.payload["data"]["task_id"], item.payload["type"])
        for item in received
        if isinstance(item.payload, dict)
    )
    wanted = sorted((task_id, f"task.{status.value}") for task_id, status in EXPECTED.items())
    if got != wanted or not all(item.verified for item in received):
        ok = False
        console.print(Text(f"webhooks: expected {wanted}, got {got}", "red"))
    if ok:
        console.print(
            f"[bold green]all {len(EXPECTED)} tasks reached their final status and "
            f"{len(received)} signed webhooks arrived and verified.[/bold green]\n"
            f"Look around: TRACKER_DATA_DIR={DEMO_DIR} {_command()} status demo-720p-5s "
            "(or history, list, deliveries)"
        )
    else:
        console.print(f"[red]the demo did not finish as expected; worker log: {log_path}[/red]")
    return ok
