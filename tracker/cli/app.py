"""The `tracker` command: parses arguments, calls a use case, prints the result. No SQL here.

Errors that tracker raises on purpose end the command with one red line on stderr, never a
traceback, and an exit code per kind (`output.EXIT_CODES`: 2 bad input, 3 not found, 4 conflict,
1 unavailable or anything else).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tracker import db
from tracker.cli import observe, tables, tokens, webhooks
from tracker.cli.output import JsonFlag, err, friendly_errors, out
from tracker.cli.parsing import read_task_ids
from tracker.db.clock import database_now
from tracker.settings import Settings, get_settings
from tracker.states import TaskStatus
from tracker.tasks import queries
from tracker.tasks import register as register_use_case
from tracker.tasks import untrack as untrack_use_case
from tracker.webhooks.guard import AddressPolicy

__all__ = ["app", "main"]

app = typer.Typer(
    help=(
        "Follow TensorsLab video tasks until they finish: register task IDs, let the worker "
        "poll them, query every status change.\n\n"
        "Settings come from the environment or a .env file (see the README). "
        "New here? Run `tracker demo`."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
TASKS, RUN, WEBHOOKS = "Tasks", "Running tracker", "Webhooks and API access"


class LogLevelName(enum.StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


LogLevel = Annotated[
    LogLevelName, typer.Option("--loglevel", "-l", case_sensitive=False, help="Log level.")
]


def _settings() -> Settings:
    return get_settings()


@db_app.command("upgrade")
@friendly_errors
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create or update the database schema (Alembic migrations)."""
    from tracker.db import migrate

    settings = _settings()
    try:
        before = migrate.current_revision(settings.database_url)
        migrate.upgrade(settings.database_url, revision)
        after = migrate.current_revision(settings.database_url)
    except Exception as error:  # alembic wraps driver errors in several ways
        from tracker.errors import DatabaseUnavailable

        reason = " ".join(str(getattr(error, "orig", error)).split())[:300]
        raise DatabaseUnavailable(f"migration failed: {reason}") from None
    where = db.describe_url(settings.database_url)
    if before == after:
        out.print(f"database at [bold]{where}[/bold] was already at revision {after}")
    else:
        out.print(f"database at [bold]{where}[/bold] upgraded from {before or 'empty'} to {after}")


@app.command(rich_help_panel=TASKS)
@friendly_errors
def register(
    task_ids: Annotated[
        list[str], typer.Argument(help="TensorsLab task IDs; `-` reads one per line from stdin.")
    ],
    webhook: Annotated[
        str | None,
        typer.Option(
            help="Also POST how these tasks end (completed, failed, not_found, expired, "
            "cancelled) to this URL, signed with a secret printed once."
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Start tracking task IDs. All are stored, or none if any is invalid.

    Registering an ID that is already tracked is harmless: it changes nothing (but adds
    --webhook if the task does not send to that URL yet) and says so.
    """
    ids = list(read_task_ids(task_ids))
    settings = _settings()
    with db.session_scope() as session:
        registrations = register_use_case.register(
            session,
            ids,
            first_poll_delay_s=settings.poll_first_delay_s,
            webhook_url=webhook,
            policy=AddressPolicy.from_settings(settings),
        )
    secret = next((item.webhook_secret for item in registrations if item.webhook_secret), None)
    if json_output:
        tasks = [{"created": item.created, "task": item.task} for item in registrations]
        out.print_json(tables.to_json({"tasks": tasks, "webhook_secret": secret}))
        return
    if secret is not None:
        out.print(
            f"webhook {escape(str(webhook))} signing secret (shown once, keep it): "
            f"[bold]{secret}[/bold]",
            highlight=False,
        )
    for item in registrations:
        task_id = escape(item.task.task_id)
        if item.created:
            out.print(f"registered [bold]{task_id}[/bold]", highlight=False)
            continue
        change = "webhook added" if item.webhook_added else "nothing changed"
        out.print(
            f"already tracked [bold]{task_id}[/bold] (status {item.task.status.value}); {change}",
            highlight=False,
        )


@app.command(rich_help_panel=TASKS)
@friendly_errors
def status(
    task_id: Annotated[str, typer.Argument(help="The task ID.")], json_output: JsonFlag = False
) -> None:
    """Show one task: status, result URLs, messages, poll counts and times."""
    with db.read_scope() as session:
        task = queries.get_task(session, task_id)
    if json_output:
        out.print_json(tables.to_json(task))
    else:
        out.print(tables.task_table(task))


@app.command(rich_help_panel=TASKS)
@friendly_errors
def history(
    task_id: Annotated[str, typer.Argument(help="The task ID.")], json_output: JsonFlag = False
) -> None:
    """Show every status change of a task, oldest first."""
    with db.read_scope() as session:
        transitions = queries.history(session, task_id)
    if json_output:
        out.print_json(tables.to_json(transitions))
    else:
        out.print(tables.history_table(task_id, transitions))


@app.command("list", rich_help_panel=TASKS)
@friendly_errors
def list_(
    status_filter: Annotated[
        TaskStatus | None, typer.Option("--status", "-s", help="Only tasks in this status.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 50,
    json_output: JsonFlag = False,
) -> None:
    """List tracked tasks, newest first."""
    with db.read_scope() as session:
        tasks = queries.list_tasks(session, status=status_filter, limit=limit)
        pauses = queries.provider_pauses(session, now=database_now(session))
    if json_output:
        out.print_json(tables.to_json(tasks))
        return
    out.print(tables.tasks_table(tasks, title=f"{len(tasks)} tracked tasks (newest first)"))
    for pause in pauses:
        err.print(
            f"[yellow]polling of {pause.provider} is paused until "
            f"{pause.paused_until:%H:%M:%S} UTC:[/yellow] {pause.reason}",
            highlight=False,
        )


@app.command(rich_help_panel=TASKS)
@friendly_errors
def untrack(
    task_id: Annotated[str, typer.Argument(help="The task ID.")], json_output: JsonFlag = False
) -> None:
    """Stop tracking a task: it becomes `cancelled` and is never polled again.

    A task that already completed, failed, expired or was not found is a conflict (exit 4).
    """
    with db.session_scope() as session:
        result = untrack_use_case.untrack(session, task_id)
    if json_output:
        out.print_json(tables.to_json({"changed": result.changed, "task": result.task}))
    elif result.changed:
        out.print(f"untracked [bold]{escape(task_id)}[/bold]: now cancelled", highlight=False)
    else:
        out.print(f"{escape(task_id)} is already cancelled; nothing changed", highlight=False)


@app.command(rich_help_panel=RUN)
@friendly_errors
def worker(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=64)] = 2,
    loglevel: LogLevel = LogLevelName.INFO,
    with_beat: Annotated[
        bool,
        typer.Option("--beat", hidden=True, help="Run beat inside this worker (`tracker up`)."),
    ] = False,
) -> None:
    """Run a worker: polls the batches that beat hands out. Needs TENSORSLAB_API_KEY."""
    from tracker.worker import processes

    processes.run_worker(
        _settings(), concurrency=concurrency, loglevel=loglevel.value, with_beat=with_beat
    )


@app.command(rich_help_panel=RUN)
@friendly_errors
def beat(
    loglevel: LogLevel = LogLevelName.INFO,
    schedule_file: Annotated[
        Path | None,
        typer.Option("--schedule", help="Beat's state file (default: in TRACKER_DATA_DIR)."),
    ] = None,
) -> None:
    """Run beat: every TRACKER_TICK_INTERVAL_S it claims due tasks and hands them to workers."""
    from tracker.worker import processes

    processes.run_beat(_settings(), loglevel=loglevel.value, schedule_file=schedule_file)


@app.command(rich_help_panel=RUN)
@friendly_errors
def up(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=64)] = 2,
    loglevel: LogLevel = LogLevelName.INFO,
    api: Annotated[
        bool,
        typer.Option(help="Also serve the HTTP API on TRACKER_API_HOST:TRACKER_API_PORT."),
    ] = True,
) -> None:
    """Run worker, beat and the HTTP API together, for one machine. Needs TENSORSLAB_API_KEY.

    Each runs in a child process of this one; stopping this one (SIGTERM, Ctrl-C) stops them
    all within TRACKER_SHUTDOWN_GRACE_S, and a child never outlives it.
    """
    from tracker.worker import supervisor

    code = supervisor.run_up(
        _settings(), concurrency=concurrency, loglevel=loglevel.value, with_api=api
    )
    if code:
        raise typer.Exit(code)


@app.command(rich_help_panel=RUN)
def simulate(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8099,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    api_key: Annotated[
        str | None,
        typer.Option(help="Accept only this key (as `Bearer KEY` or raw); default: any key."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for fault injection.")] = 0,
    verbose: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Serve the TensorsLab simulator: the real contract, scripted tasks, fault injection.

    Create tasks with `POST /_sim/tasks` (see the README), then point TENSORSLAB_BASE_URL at it.
    """
    from tracker.testing.simulator import serve

    try:
        serve(host=host, port=port, api_key=api_key, seed=seed, verbose=verbose)
    except OSError as error:
        err.print(f"[red]error:[/red] cannot listen on {host}:{port}: {error.strerror}")
        raise typer.Exit(1) from None


@app.command(rich_help_panel=RUN)
@friendly_errors
def demo(
    timeout_s: Annotated[float, typer.Option("--timeout", help="Give up after this long.")] = 120,
) -> None:
    """See tracker work, with nothing to set up: a simulator, a worker and beat, live.

    Uses a throw-away data folder (.tracker-demo) with SQLite and the embedded broker.
    """
    from tracker.cli import demo as demo_module

    ok = demo_module.run(out, timeout_s=timeout_s)
    raise typer.Exit(0 if ok else 1)


app.command("watch", rich_help_panel=TASKS)(friendly_errors(observe.watch))
app.command("stats", rich_help_panel=TASKS)(friendly_errors(observe.stats))
app.command("api", rich_help_panel=RUN)(tokens.serve_api)
app.add_typer(db_app, name="db", rich_help_panel=RUN)
app.add_typer(webhooks.webhooks_app, name="webhooks", rich_help_panel=WEBHOOKS)
app.add_typer(webhooks.deliveries_app, name="deliveries", rich_help_panel=WEBHOOKS)
app.command("redeliver", rich_help_panel=WEBHOOKS)(friendly_errors(webhooks.redeliver))
app.add_typer(tokens.tokens_app, name="tokens", rich_help_panel=WEBHOOKS)


def main() -> None:
    app()
