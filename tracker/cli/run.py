"""The commands that run tracker: `db upgrade`, `worker`, `beat`, `up`, `api`, `simulate`, `demo`.

Each checks what it needs first (`tracker.worker.processes`), so a missing key, database, broker
or port is one line, not a traceback.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tracker import db
from tracker.cli.output import err, friendly_errors, out
from tracker.settings import get_settings

__all__ = [
    "LogLevel",
    "beat",
    "db_app",
    "db_upgrade",
    "demo",
    "serve_api",
    "simulate",
    "up",
    "worker",
]

db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)


class LogLevelName(enum.StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


LogLevel = Annotated[
    LogLevelName, typer.Option("--loglevel", "-l", case_sensitive=False, help="Log level.")
]
LogFile = Annotated[
    Path | None,
    typer.Option(
        "--log-file",
        dir_okay=False,
        help="Append the logs to this file (every process: pool, beat, API) instead of stderr.",
    ),
]
# `tracker up` has printed the summary already; its children say nothing more at start.
NoSummary = Annotated[bool, typer.Option("--no-summary", hidden=True)]


@db_app.command("upgrade")
@friendly_errors
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create or update the database schema (Alembic migrations)."""
    from tracker.db import migrate

    settings = get_settings()
    try:
        before = migrate.current_revision(settings.database_url)
        migrate.upgrade(settings.database_url, revision)
        after = migrate.current_revision(settings.database_url)
    except Exception as error:  # alembic wraps driver errors in several ways
        from tracker.errors import DatabaseUnavailable, one_line

        cause = getattr(error, "orig", None) or error
        raise DatabaseUnavailable(f"migration failed: {one_line(cause)}") from None
    where = escape(db.describe_url(settings.database_url))
    if before == after:
        out.print(f"database at [bold]{where}[/bold] was already at revision {after}")
    else:
        out.print(f"database at [bold]{where}[/bold] upgraded from {before or 'empty'} to {after}")
    if revision == "head":
        _encrypt_plain_secrets()


def _encrypt_plain_secrets() -> None:
    """Webhook secrets stored before they were encrypted at rest are encrypted now, once."""
    from tracker.webhooks.rekey import encrypt_secrets
    from tracker.webhooks.vault import get_vault

    with db.session_scope() as session:
        done = encrypt_secrets(session, get_vault(create=True), plain_only=True)
    if done.secrets:
        out.print(f"encrypted {done.secrets} webhook secrets stored in plain text", highlight=False)


def _queue_kinds(value: str) -> str:
    from tracker.worker.processes import QUEUE_KINDS

    kinds = [kind.strip().lower() for kind in value.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in QUEUE_KINDS]
    if unknown or not kinds:
        raise typer.BadParameter(
            f"{', '.join(unknown) or 'nothing'}: choose one or more of {', '.join(QUEUE_KINDS)}"
        )
    return ",".join(kinds)


@friendly_errors
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            max=64,
            help="Processes (default: 2; TRACKER_WEBHOOK_WORKERS for `--queues webhooks`).",
        ),
    ] = None,
    queues: Annotated[
        str,
        typer.Option(
            "--queues",
            "-Q",
            callback=_queue_kinds,
            help="What to consume: polls (ticks and poll batches), webhooks (deliveries), or both.",
        ),
    ] = "polls,webhooks",
    loglevel: LogLevel = LogLevelName.INFO,
    with_beat: Annotated[
        bool,
        typer.Option("--beat", hidden=True, help="Run beat inside this worker (`tracker up`)."),
    ] = False,
    log_file: LogFile = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65535,
            help="Serve this worker's counters at /metrics on this port (default: "
            "TRACKER_WORKER_METRICS_PORT; unset: none).",
        ),
    ] = None,
    no_summary: NoSummary = False,
) -> None:
    """Run a worker: polls the batches that beat hands out and sends the webhooks due.

    Polling needs TENSORSLAB_API_KEY; a `--queues webhooks` worker does not.
    """
    from tracker.worker import processes

    settings = get_settings()
    kinds = queues.split(",")
    if concurrency is None:
        concurrency = settings.webhook_workers if kinds == ["webhooks"] else 2
    source = f"--metrics-port {metrics_port}"
    if metrics_port is None:
        metrics_port = settings.worker_metrics_port
        source = f"TRACKER_WORKER_METRICS_PORT={metrics_port}"
    processes.run_worker(
        settings,
        concurrency=concurrency,
        loglevel=loglevel.value,
        with_beat=with_beat,
        queues=kinds,
        log_file=log_file,
        summary=not no_summary,
        metrics_port=metrics_port,
        metrics_port_source=source,
    )


@friendly_errors
def beat(
    loglevel: LogLevel = LogLevelName.INFO,
    schedule_file: Annotated[
        Path | None,
        typer.Option("--schedule", help="Beat's state file (default: in TRACKER_DATA_DIR)."),
    ] = None,
    log_file: LogFile = None,
) -> None:
    """Run beat: every TRACKER_TICK_INTERVAL_S it claims due tasks and hands them to workers."""
    from tracker.worker import processes

    processes.run_beat(
        get_settings(), loglevel=loglevel.value, schedule_file=schedule_file, log_file=log_file
    )


@friendly_errors
def up(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=64)] = 2,
    loglevel: LogLevel = LogLevelName.INFO,
    api: Annotated[
        bool,
        typer.Option(help="Also serve the HTTP API on TRACKER_API_HOST:TRACKER_API_PORT."),
    ] = True,
    log_file: LogFile = None,
) -> None:
    """Run workers, beat and the HTTP API together, for one machine. Needs TENSORSLAB_API_KEY.

    A poll worker (-c processes, beat embedded) and a webhook worker (TRACKER_WEBHOOK_WORKERS
    processes), so that slow webhook receivers never hold up polling.

    Each runs in a child process of this one; stopping this one (SIGTERM, Ctrl-C) stops them
    all within TRACKER_SHUTDOWN_GRACE_S, and a child never outlives it.
    """
    from tracker.worker import supervisor

    code = supervisor.run_up(
        get_settings(),
        concurrency=concurrency,
        loglevel=loglevel.value,
        with_api=api,
        log_file=log_file,
    )
    if code:
        raise typer.Exit(code)


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
        err.print(
            f"[red]error:[/red] cannot listen on {escape(host)}:{port}: "
            f"{escape(str(error.strerror))}",
            highlight=False,
        )
        raise typer.Exit(1) from None


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


@friendly_errors
def serve_api(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: TRACKER_API_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port (default: TRACKER_API_PORT, 8000)."),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--loglevel", "-l", help="uvicorn's log level (info, warning...).")
    ] = "info",
    log_file: LogFile = None,
    no_summary: NoSummary = False,
) -> None:
    """Serve the HTTP API (docs at /docs) and the dashboard (at /); both take a token from
    `tracker tokens create`."""
    from tracker.worker import processes

    processes.run_api(
        get_settings(),
        host=host,
        port=port,
        log_level=log_level.lower(),
        log_file=log_file,
        summary=not no_summary,
    )
