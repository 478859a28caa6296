"""Starting the long-running processes (worker, beat, API) after checking what they need.

Each check fails with one clear line (an `errors.TrackerError`), never a traceback: a missing API
key, a database without tables, a broker that does not answer, a port that is taken. `tracker up`
supervises these processes (`supervisor.py`); how long each may live is `lifetime.py`'s job.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from tracker import db
from tracker.db.engine import make_private_folder
from tracker.errors import PortUnavailable
from tracker.health import check_api_key, check_broker, check_database
from tracker.settings import Settings
from tracker.worker import metrics_server, startup

__all__ = [
    "QUEUE_KINDS",
    "check_port_free",
    "preflight",
    "queue_names",
    "run_api",
    "run_beat",
    "run_worker",
]

# What a worker may consume (`tracker worker --queues`): ticks and poll batches, and webhook
# deliveries. Each is a broker queue of its own (celeryconfig.py's task_routes).
QUEUE_KINDS = ("polls", "webhooks")

# Celery logs every task it receives and finishes, and beat every tick it sends: three INFO
# lines a second doing nothing. tracker logs what its tasks did (claims, polls, sends) itself,
# and Celery's errors stay visible; --loglevel DEBUG brings the chatter back.
CHATTY_CELERY_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")


def _quiet_celery(loglevel: str) -> None:
    if loglevel.upper() != "DEBUG":
        for name in CHATTY_CELERY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def preflight(settings: Settings, *, needs_api_key: bool) -> None:
    make_private_folder(settings.data_dir)  # 0700; beat keeps its schedule file there
    if needs_api_key:
        check_api_key(settings)
    check_database()
    check_broker(settings)


# --- tracker worker, beat, api ---------------------------------------------------------------


def queue_names(settings: Settings, kinds: Sequence[str]) -> list[str]:
    """The broker queues of `kinds` ("polls", "webhooks"), in that order."""
    unknown = sorted(set(kinds) - set(QUEUE_KINDS))
    if unknown or not kinds:
        raise ValueError(
            f"unknown queue kind {', '.join(map(repr, unknown))}; choose from "
            f"{', '.join(QUEUE_KINDS)}"
            if unknown
            else "no queue to consume"
        )
    names = {"polls": settings.poll_queue, "webhooks": settings.webhook_queue}
    return [names[kind] for kind in QUEUE_KINDS if kind in kinds]


def run_worker(
    settings: Settings,
    *,
    concurrency: int,
    loglevel: str,
    with_beat: bool = False,
    queues: Sequence[str] = QUEUE_KINDS,
    log_file: Path | None = None,
    summary: bool = True,
    metrics_port: int | None = None,
    metrics_port_source: str = "",
) -> None:
    """Run a Celery worker in this process (with beat embedded for `tracker up`), consuming
    the queues of `queues` (both by default: one worker does everything).

    With `metrics_port` it serves its counters there (on TRACKER_WORKER_METRICS_HOST) before
    Celery starts: a port that is taken is one line, and nothing consumed; `metrics_port_source`
    says what chose the port, for that line (default: the setting).

    It says what it runs against in one summary (none with `summary=False`: `tracker up` said
    it already) and logs to stderr, or appends to `log_file`, pool processes included.
    """
    from tracker import metrics

    names = queue_names(settings, queues)
    folder = metrics.enable_worker_metrics(settings)  # before anything imports prometheus_client
    # Sending webhooks needs no upstream key; polling does.
    preflight(settings, needs_api_key="polls" in queues)
    served_at = None
    if metrics_port is not None:
        served_at = metrics_server.serve_worker_metrics(
            folder,
            host=settings.worker_metrics_host,
            port=metrics_port,
            source=metrics_port_source,
        )
    # No connection may be open when the worker forks its pool and its embedded beat: a child
    # that inherits an open SQLite connection's locks fails with "locking protocol".
    db.dispose_engine()
    from tracker.worker.celery_app import app

    startup.hand_celery_logging_to_tracker(loglevel, log_file)
    if summary:
        role = f"worker: consumes {', '.join(names)}" + ("; beat embedded" if with_beat else "")
        lines = startup.summary_lines(
            settings,
            role=role,
            loglevel=loglevel,
            log_file=log_file,
            concurrency=startup.processes(concurrency),
            metrics=served_at,
        )
        startup.print_summary(lines, log_file=log_file)
    argv = [
        "--quiet",  # no banner: the summary above says what matters
        "worker",
        f"--loglevel={loglevel}",
        f"--concurrency={concurrency}",
        f"--queues={','.join(names)}",
    ]
    if len(names) == 1:
        # A node name per kind (polls@host, webhooks@host): `tracker up` runs both on one host.
        argv.append(f"--hostname={queues[0]}@%h")
    if with_beat:
        argv += ["--beat", f"--schedule={settings.data_dir.resolve() / 'celerybeat-schedule'}"]
    if settings.uses_embedded_broker:
        # The filesystem transport has no broadcast support worth relying on; nothing of
        # tracker's needs remote control, and gossip/mingle only make noise on one machine.
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    _quiet_celery(loglevel)
    app.worker_main(argv)


def check_port_free(
    host: str,
    port: int,
    *,
    what: str = "the API",
    fix: Callable[[OSError], str] | None = None,
) -> None:
    """PortUnavailable, naming what would be served there and what to do (`fix(error)`;
    default: the API's), unless host:port can be bound now."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        advice = (
            fix(error) if fix is not None else "set TRACKER_API_PORT, or run `tracker up --no-api`"
        )
        raise PortUnavailable(
            f"cannot serve {what} on {host}:{port}: {error.strerror or error} ({advice})"
        ) from None


def run_api(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str,
    log_file: Path | None = None,
    summary: bool = True,
) -> None:
    """Serve the HTTP API with uvicorn in this process, after checking the database.

    uvicorn's options, and the time limit on reading each request, are `tracker.api.server`'s.
    Its logs go through tracker's logging (stderr, or appended to `log_file`).
    """
    import uvicorn

    from tracker.api import create_app
    from tracker.api.server import server_options

    check_database()
    host = host or settings.api_host
    port = port or settings.api_port
    check_port_free(host, port)
    startup.configure_logging(log_level, log_file)
    if summary:
        lines = startup.summary_lines(
            settings,
            role="api",
            loglevel=log_level,
            log_file=log_file,
            api_address=_http_address(host, port),
        )
        startup.print_summary(lines, log_file=log_file)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # uvicorn's loggers reach the root logger configured above
        **server_options(settings),
    )


def _http_address(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_beat(
    settings: Settings,
    *,
    loglevel: str,
    schedule_file: Path | None = None,
    log_file: Path | None = None,
) -> None:
    """Run Celery beat (the ticker) in this process, after one summary."""
    schedule_file = schedule_file or settings.data_dir.resolve() / "celerybeat-schedule"
    make_private_folder(schedule_file.parent)
    preflight(settings, needs_api_key=False)
    from tracker.worker.celery_app import app

    startup.hand_celery_logging_to_tracker(loglevel, log_file)
    lines = startup.summary_lines(
        settings,
        role=f"beat: a tick every {settings.tick_interval_s:g} s",
        loglevel=loglevel,
        log_file=log_file,
    )
    startup.print_summary(lines, log_file=log_file)
    _quiet_celery(loglevel)
    app.start(
        [
            "--quiet",  # no banner: the summary above says what matters
            "beat",
            f"--loglevel={loglevel}",
            f"--schedule={schedule_file}",
        ]
    )
