"""Scratch PostgreSQL databases, for tests and benchmarks that need a real server.

`scratch_database(admin_url, prefix)` creates a database with a unique name on the server that
`admin_url` reaches (a SQLAlchemy or libpq URL of a role allowed to CREATE DATABASE), migrates
it to head with tracker's own migrations (unless `migrated=False`), yields its SQLAlchemy URL and
drops it afterwards `WITH (FORCE)`, after `tracker.db.dispose_engine()` has let go of it. When
the server does not answer, `PostgresUnavailable` says which one (the password hidden).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from tracker import db
from tracker.db import migrate

__all__ = ["PostgresUnavailable", "admin_connection", "database_url", "scratch_database"]

CONNECT_TIMEOUT_S = 10


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server does not answer (down, wrong address, or refused the role)."""


def database_url(admin_url: str, database: str) -> str:
    """`admin_url` pointed at another database on the same server, as a SQLAlchemy URL."""
    return make_url(admin_url).set(database=database).render_as_string(hide_password=False)


def admin_connection(admin_url: str) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to `admin_url`; PostgresUnavailable when the server is silent."""
    url = make_url(admin_url)
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return psycopg.connect(libpq, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.OperationalError as error:
        where = url.render_as_string(hide_password=True)
        reason = " ".join(str(error).split())
        raise PostgresUnavailable(f"PostgreSQL at {where} does not answer ({reason})") from error


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str, *, migrated: bool = True) -> Iterator[str]:
    """A new database `<prefix>_<random>`, migrated to head unless `migrated` is False; yields
    its SQLAlchemy URL and drops it afterwards, whatever happened."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin_connection(admin_url) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = database_url(admin_url, name)
        if migrated:
            migrate.upgrade(url)
        yield url
    finally:
        db.dispose_engine()
        with admin_connection(admin_url) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))
