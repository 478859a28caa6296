"""Checks of what tracker needs, each failing with one clear line (a `TrackerError`).

Used before a process starts (`tracker worker`, `beat`, `up`, `api`) and by `/readyz`.
"""

from __future__ import annotations

from sqlalchemy import text

from tracker import db
from tracker.errors import BrokerUnavailable, one_line
from tracker.settings import Settings
from tracker.upstream import make_provider

__all__ = ["check_api_key", "check_broker", "check_database"]


def check_api_key(settings: Settings) -> None:
    """Raise `MissingAPIKey` unless a TensorsLab key is configured."""
    make_provider(settings).close()


def check_database(url: str | None = None) -> None:
    """Raise `DatabaseUnavailable` unless the database answers and has tracker's tables."""
    with db.read_scope(url) as session:
        session.execute(text("SELECT 1 FROM tracked_tasks LIMIT 1"))


def check_broker(settings: Settings, *, timeout_s: float = 5.0) -> None:
    """Raise `BrokerUnavailable` unless the broker accepts a connection."""
    from tracker.worker.celery_app import app

    connection = app.connection_for_write()
    try:
        connection.ensure_connection(max_retries=1, timeout=timeout_s)
    except Exception as error:  # kombu raises several unrelated types for "cannot connect"
        where = connection.as_uri()  # masks the password
        raise BrokerUnavailable(f"cannot reach the broker at {where}: {one_line(error)}") from None
    finally:
        connection.release()
