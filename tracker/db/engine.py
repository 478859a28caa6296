"""Engines and sessions: one engine per process and URL, made on first use, never at import.

Two kinds of transaction, so readers never queue behind writers:

- `session_scope()` (also `Database.write()`) for use cases that write. On SQLite it begins with
  `BEGIN IMMEDIATE`, taking the write lock up front: a deferred transaction that reads and then
  writes fails with SQLITE_BUSY at once when another process wrote in between.
- `read_scope()` (also `Database.read()`) for queries. On SQLite it begins a deferred
  transaction, which in WAL mode reads a snapshot without the write lock.

Engines hide statement parameters from error messages (they can hold webhook secrets), and
every database error that means "the database cannot serve this now" becomes one
`DatabaseUnavailable` line, chosen by exception class and SQLSTATE (or SQLite's error name),
never by matching message text. A process forked after an engine was made (Celery's prefork
pool) gets its own engine instead of sharing the parent's sockets.

What tracker creates on disk is its owner's only: folders 0700 (`make_private_folder`), the
SQLite file 0600 (and so its -wal and -shm files, which SQLite creates with the database
file's mode), whatever the umask.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from tracker.db.failures import classify
from tracker.errors import ConfigError, DatabaseUnavailable

__all__ = [
    "Database",
    "describe_url",
    "dispose_engine",
    "get_engine",
    "make_engine",
    "make_private_folder",
    "read_scope",
    "session_scope",
]

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "tracker_read_only"  # execution option: begin a transaction that only reads
SCHEMA_TABLE = "tracked_tasks"  # present once `tracker db upgrade` has run
PRIVATE_FOLDER_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def make_engine(url: str, **options: Any) -> Engine:
    """A new engine for `url`, configured for tracker's access pattern."""
    parsed = make_url(url)
    options.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        path = None
        if parsed.database and not parsed.database.startswith((":memory:", "file:")):
            path = Path(parsed.database)
            _make_folder(path.parent)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **options
        )
        _configure_sqlite(engine, path)
        return engine
    options.setdefault("pool_pre_ping", True)
    options.setdefault("connect_args", {"connect_timeout": 10})
    return create_engine(url, **options)


def _make_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"{folder} is a file, not a folder: the SQLite database cannot live in it "
            "(set TRACKER_DATA_DIR or TRACKER_DATABASE_URL to a folder tracker may use)"
        )
    try:
        make_private_folder(folder)
    except OSError as error:
        raise ConfigError(
            f"cannot create the folder {folder} for the SQLite database: "
            f"{error.strerror or error} (set TRACKER_DATA_DIR or TRACKER_DATABASE_URL)"
        ) from None


def make_private_folder(folder: Path) -> None:
    """Create `folder` and its missing parents, each 0700 whatever the umask.

    Folders that already exist keep their mode: they may be the user's (a home, /srv...).
    """
    missing: list[Path] = []
    current = folder
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=PRIVATE_FOLDER_MODE)
        except FileExistsError:
            if not path.is_dir():
                raise
            continue  # made by another process just now: it applies the mode itself
        path.chmod(PRIVATE_FOLDER_MODE)  # mkdir's mode is narrowed by the umask only


def _make_private_file(path: Path) -> None:
    """Make `path` 0600: created so (an empty file is an empty SQLite database), or narrowed."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        pass
    except OSError:
        return  # cannot create it here: connecting reports the problem as one line
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in SQLITE_SIDE_FILES)):
        try:
            if candidate.stat().st_mode & 0o777 != PRIVATE_FILE_MODE:
                candidate.chmod(PRIVATE_FILE_MODE)
        except OSError:
            pass  # absent, or not ours to change


def _configure_sqlite(engine: Engine, path: Path | None) -> None:
    if path is not None:

        @event.listens_for(engine, "do_connect")
        def _private_file(*_: Any) -> None:
            # Before the driver opens (and so creates) the file, and before WAL mode makes the
            # -wal and -shm files, which SQLite gives the database file's mode.
            _make_private_file(path)

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
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")  # deferred: a WAL snapshot, no write lock
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


_engines: dict[tuple[int, str], Engine] = {}
_factories: dict[tuple[Engine, bool], sessionmaker[Session]] = {}


def get_engine(url: str | None = None) -> Engine:
    """This process's engine for `url` (default: the configured database)."""
    if url is None:
        url = _configured_url()
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        for (pid, other_url), inherited in list(_engines.items()):
            if pid != os.getpid() and other_url == url:
                inherited.dispose(close=False)  # the parent's connections stay the parent's
                del _engines[(pid, other_url)]
                _forget_factories(inherited)
        engine = _engines[key] = make_engine(url)
    return engine


def _forget_factories(engine: Engine) -> None:
    for key in [key for key in _factories if key[0] is engine]:
        del _factories[key]


def dispose_engine() -> None:
    """Close this process's engines (tests and shutdown)."""
    for key, engine in list(_engines.items()):
        if key[0] == os.getpid():
            engine.dispose()
        del _engines[key]
        _forget_factories(engine)


def _factory(engine: Engine, *, read_only: bool) -> sessionmaker[Session]:
    factory = _factories.get((engine, read_only))
    if factory is None:
        bind = engine.execution_options(**{READ_ONLY: True}) if read_only else engine
        factory = _factories[(engine, read_only)] = sessionmaker(bind, expire_on_commit=False)
    return factory


@contextmanager
def _scope(url: str | None, *, read_only: bool) -> Iterator[Session]:
    engine = get_engine(url)
    try:
        with _factory(engine, read_only=read_only).begin() as session:
            yield session
    except DBAPIError as error:
        problem = classify(error, schema_present=lambda: _has_schema(engine))
        if problem is None:
            raise
        if problem.missing_schema:
            raise DatabaseUnavailable(
                f"{describe_url(url)} has no tracker tables yet: run `tracker db upgrade` first"
            ) from None
        raise DatabaseUnavailable(
            f"cannot use the database at {describe_url(url)}: {problem.reason}"
        ) from None


def session_scope(url: str | None = None) -> AbstractContextManager[Session]:
    """One session in one writing transaction: committed on success, rolled back on error.

    A database that cannot serve (down, locked, read-only, full, no schema) raises
    `DatabaseUnavailable` with a one-line reason.
    """
    return _scope(url, read_only=False)


def read_scope(url: str | None = None) -> AbstractContextManager[Session]:
    """One session in a transaction that only reads; on SQLite it never takes the write lock."""
    return _scope(url, read_only=True)


def _has_schema(engine: Engine) -> bool:
    try:
        return inspect(engine).has_table(SCHEMA_TABLE)
    except DBAPIError:
        return True  # cannot tell: report the original problem, not a missing schema


class Database:
    """One database, as the edges (API routes, the Python client) are given it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def write(self) -> AbstractContextManager[Session]:
        """A writing transaction (`session_scope`)."""
        return session_scope(self.url)

    def read(self) -> AbstractContextManager[Session]:
        """A transaction that only reads (`read_scope`)."""
        return read_scope(self.url)

    def describe(self) -> str:
        return describe_url(self.url)


def _configured_url() -> str:
    from tracker.settings import get_settings

    return get_settings().database_url


def describe_url(url: str | None = None) -> str:
    """`url` (default: the configured database) with any password hidden."""
    return make_url(url or _configured_url()).render_as_string(hide_password=True)
