"""Engine and session factory: one engine per process, made on first use, never at import.

SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE` so several worker processes can share the
file safely; PostgreSQL uses psycopg 3. A process forked after the engine was made (Celery's
prefork pool) gets its own engine instead of sharing the parent's sockets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from tracker.errors import DatabaseUnavailable

__all__ = [
    "dispose_engine",
    "get_engine",
    "make_engine",
    "session_scope",
]

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, **options: Any) -> Engine:
    """A new engine for `url`, configured for tracker's access pattern."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **options
        )
        _configure_sqlite(engine)
        return engine
    options.setdefault("pool_pre_ping", True)
    options.setdefault("connect_args", {"connect_timeout": 10})
    return create_engine(url, **options)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions start (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock up front: a deferred transaction that reads and then writes fails
        # with SQLITE_BUSY at once when another process wrote in between, busy timeout or not.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


_engines: dict[tuple[int, str], Engine] = {}
_factories: dict[Engine, sessionmaker[Session]] = {}


def get_engine(url: str | None = None) -> Engine:
    """This process's engine for `url` (default: the configured database)."""
    if url is None:
        from tracker.settings import get_settings

        url = get_settings().database_url
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        for (pid, other_url), inherited in list(_engines.items()):
            if pid != os.getpid() and other_url == url:
                inherited.dispose(close=False)  # the parent's connections stay the parent's
                del _engines[(pid, other_url)]
                _factories.pop(inherited, None)
        engine = _engines[key] = make_engine(url)
    return engine


def dispose_engine() -> None:
    """Close this process's engines (tests and shutdown)."""
    for key, engine in list(_engines.items()):
        if key[0] == os.getpid():
            engine.dispose()
        del _engines[key]
        _factories.pop(engine, None)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """One session in one transaction: committed on success, rolled back on error.

    Connection failures surface as `DatabaseUnavailable` with a one-line reason.
    """
    engine = get_engine(url)
    factory = _factories.get(engine)
    if factory is None:
        factory = _factories[engine] = sessionmaker(engine, expire_on_commit=False)
    try:
        with factory.begin() as session:
            yield session
    except DBAPIError as error:
        if _is_missing_schema(error):
            raise DatabaseUnavailable(
                f"{describe_url(url)} has no tracker tables yet: run `tracker db upgrade` first"
            ) from error
        if error.connection_invalidated or _is_connection_error(error):
            raise DatabaseUnavailable(
                f"cannot use the database at {describe_url(url)}: {_reason(error)}"
            ) from error
        raise


def _is_missing_schema(error: DBAPIError) -> bool:
    text = str(error.orig).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


def _is_connection_error(error: DBAPIError) -> bool:
    text = str(error.orig).lower()
    return any(
        marker in text
        for marker in (
            "connection",
            "could not connect",
            "unable to open",
            "no such table",
            "server closed",
        )
    )


def describe_url(url: str | None = None) -> str:
    """`url` (default: the configured database) with any password hidden."""
    if url is None:
        from tracker.settings import get_settings

        url = get_settings().database_url
    return make_url(url).render_as_string(hide_password=True)


def _reason(error: DBAPIError) -> str:
    return " ".join(str(error.orig).split())[:300]
