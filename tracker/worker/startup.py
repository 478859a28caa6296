"""How `tracker up`, `worker`, `beat` and `api` start: one summary, and tracker's own logging.

Celery starts with a banner of some twenty lines and a few warnings (running as root, a missing
broker host name); tracker says instead, once, what matters: the database and the broker (their
passwords masked), the upstream base URL, the API's address, concurrency, log level and where
the logs go. Celery is started with `--quiet` (no banner) and leaves logging to
`configure_logging` (a `setup_logging` receiver): one format for every process, on stderr or
appended to `--log-file`, and Python's warnings logged there as well, never printed raw.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tracker import __version__
from tracker.settings import Settings

__all__ = [
    "LOG_FORMAT",
    "configure_logging",
    "hand_celery_logging_to_tracker",
    "mask_url",
    "print_summary",
    "processes",
    "summary_lines",
]

# The process (its name and PID) tells which of `tracker up`'s processes, or which pool child,
# wrote a line.
LOG_FORMAT = "%(asctime)s %(levelname)s [%(processName)s %(process)d] %(name)s: %(message)s"

log = logging.getLogger("tracker.startup")


def mask_url(url: str) -> str:
    """`url` with its password (if any) replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


def processes(count: int) -> str:
    return f"{count} process" if count == 1 else f"{count} processes"


def _broker(settings: Settings) -> str:
    if settings.uses_embedded_broker:
        return f"embedded (files in {settings.broker_folder.resolve()})"
    return mask_url(settings.broker_url)


def summary_lines(
    settings: Settings,
    *,
    role: str,
    loglevel: str,
    log_file: Path | None,
    concurrency: str | None = None,
    api_address: str | None = None,
    metrics: str | None = None,
) -> list[str]:
    """What a starting process says: `role` (e.g. "worker"), then one setting a line."""
    from tracker import db

    rows: list[tuple[str, str]] = [
        ("database", db.describe_url(settings.database_url or None)),
        ("broker", _broker(settings)),
        ("upstream", mask_url(settings.tensorslab_base_url)),
    ]
    if api_address is not None:
        rows.append(("api", api_address))
        rows.append(("dashboard", f"{api_address}/ (sign in with a `tracker tokens create` token)"))
    if metrics is not None:
        rows.append(("metrics", metrics))
    if concurrency is not None:
        rows.append(("concurrency", concurrency))
    rows.append(("log level", loglevel.upper()))
    rows.append(("logs", f"appended to {log_file.resolve()}" if log_file else "stderr"))
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        rows.append(("user", "root (better: an unprivileged user, as in the Docker image)"))
    width = max(len(name) for name, _ in rows)
    return [f"tracker {__version__} {role}"] + [
        f"  {name:<{width}}  {value}" for name, value in rows
    ]


def print_summary(lines: Sequence[str], *, log_file: Path | None) -> None:
    """The summary on stderr; also into the log file, when there is one, as one line."""
    print("\n".join(lines), file=sys.stderr, flush=True)
    if log_file is not None:
        log.info("starting %s", "; ".join(" ".join(line.split()) for line in lines))


class _TrackerHandler(logging.Handler):
    """Marks the handler tracker installed, so that configuring again replaces it."""


def _handler(log_file: Path | None) -> logging.Handler:
    if log_file is None:
        return logging.StreamHandler(sys.stderr)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # Appends; every process (and the pool's children) opens the file for appending, and
    # WatchedFileHandler reopens it after logrotate moved it.
    return logging.handlers.WatchedFileHandler(log_file, mode="a", encoding="utf-8")


def configure_logging(loglevel: str, log_file: Path | None) -> None:
    """The root logger at `loglevel`, writing `LOG_FORMAT` lines to stderr or `log_file`."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_tracker", False)]:
        root.removeHandler(handler)
        handler.close()
    handler = _handler(log_file)
    handler._tracker = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(loglevel.upper())
    logging.captureWarnings(True)  # a warning is a log line (py.warnings), not raw stderr
    _silence_known_warnings()


def _silence_known_warnings() -> None:
    try:
        from celery.exceptions import SecurityWarning
    except ImportError:  # pragma: no cover - celery is a dependency
        return
    # Running as root: the summary says so in one line ("user").
    warnings.filterwarnings("ignore", category=SecurityWarning)


def hand_celery_logging_to_tracker(loglevel: str, log_file: Path | None) -> None:
    """Have Celery (worker, beat, pool children) log through `configure_logging`: with a
    `setup_logging` receiver connected, Celery configures no handler of its own."""
    from celery.signals import setup_logging

    def receiver(**_: Any) -> None:
        configure_logging(loglevel, log_file)

    setup_logging.connect(receiver, weak=False)
    configure_logging(loglevel, log_file)
