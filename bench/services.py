"""The servers the benchmarks use: scratch PostgreSQL databases, Redis, and their versions.

PostgreSQL is reached through `BENCH_POSTGRES_URL` (an admin URL, default the local server's
`postgres` database with trust auth); each scenario creates its own database with a unique name,
migrates it with tracker's own migrations, and drops it when done. Redis is `BENCH_REDIS_URL`
(default database 12; the test suite flushes 14, so never use that one).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
import redis
from sqlalchemy.engine import make_url

from tracker import db
from tracker.db import migrate

__all__ = [
    "POSTGRES_URL",
    "REDIS_URL",
    "postgres_version",
    "redis_version",
    "scratch_database",
]

POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


def _libpq(url: str) -> str:
    """`url` as psycopg wants it (no `+psycopg` driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(_libpq(POSTGRES_URL), autocommit=True, connect_timeout=10)


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database migrated to head; yields its SQLAlchemy URL, drops it after."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        db.dispose_engine()
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_version() -> str:
    try:
        with _admin() as admin:
            row = admin.execute("SHOW server_version").fetchone()
    except psycopg.Error as error:
        return f"unreachable ({' '.join(str(error).split())[:80]})"
    return str(row[0]) if row else "unknown"


def redis_version() -> str:
    try:
        info = redis.Redis.from_url(REDIS_URL, socket_timeout=5).info("server")
    except redis.RedisError as error:
        return f"unreachable ({error})"
    return str(info.get("redis_version", "unknown"))
