"""Shared fixtures: real databases (SQLite files and a PostgreSQL database made for the run),
the simulator, and a clean environment for every test.

PostgreSQL and Redis must answer (`.ci/run` starts them); a test that needs one fails loudly
when it is down instead of being skipped.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from tracker import db
from tracker.db import migrate
from tracker.settings import get_settings
from tracker.testing import postgres
from tracker.testing.simulator import Simulator

POSTGRES_ADMIN_URL = os.environ.get(
    "TRACKER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TRACKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
SIM_API_KEY = "sim-test-key"
TABLES = (
    "api_tokens",
    "delivery_attempts",
    "webhook_deliveries",
    "webhook_subscriptions",
    "webhook_endpoints",
    "task_transitions",
    "provider_pauses",
    "provider_failures",
    "retention_runs",
    "scheduled_polls",
    "tracked_tasks",
    "submissions",
    "rate_buckets",
    "process_heartbeats",
    "schedule_buckets",
    "schedule_learning",
)


@contextlib.contextmanager
def _loud_when_down() -> Iterator[None]:
    """A test that needs PostgreSQL fails, never skips, when it does not answer."""
    try:
        yield
    except postgres.PostgresUnavailable as error:
        pytest.fail(f"{error}; start it")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, migrated to head, dropped at the end."""
    with _loud_when_down(), postgres.scratch_database(POSTGRES_ADMIN_URL, "tracker_test") as url:
        yield url


@pytest.fixture
def empty_postgres_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL database with no tracker schema at all (for migration tests)."""
    scratch = postgres.scratch_database(POSTGRES_ADMIN_URL, "tracker_empty", migrated=False)
    with _loud_when_down(), scratch as url:
        yield url


def _truncate(url: str) -> None:
    with db.get_engine(url).begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))


@pytest.fixture
def clean_postgres_url(postgres_url: str) -> str:
    """The run's PostgreSQL database, emptied for this test."""
    _truncate(postgres_url)
    return postgres_url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a SQLite file, then the run's PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tracker.db'}"
        migrate.upgrade(url)
        return url
    return str(request.getfixturevalue("clean_postgres_url"))


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis at {REDIS_URL} does not answer ({error}); start it")
    client.flushdb()
    return REDIS_URL


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No tracker setting leaks in from the developer's shell or a .env file."""
    for name in list(os.environ):
        if name.startswith(("TRACKER_", "TENSORSLAB_")) and not name.startswith("TRACKER_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRACKER_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    db.dispose_engine()
    yield
    get_settings.cache_clear()
    db.dispose_engine()


Configure = Callable[..., None]


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Configure:
    """Set tracker settings for this test: `configure(TRACKER_DATABASE_URL=..., ...)`."""

    def apply(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        get_settings.cache_clear()

    return apply


@pytest.fixture
def cli_db(database_url: str, configure: Configure) -> str:
    """A migrated database that the `tracker` command uses for this test."""
    configure(TRACKER_DATABASE_URL=database_url)
    return database_url


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(api_key=SIM_API_KEY) as sim:
        yield sim


# Last: it needs SIM_API_KEY above. A fixture for tests that start `tracker` processes.
from tests.processes import processes  # noqa: E402, F401
