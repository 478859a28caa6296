"""The schema comes from Alembic alone, and goes up and down cleanly on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from tracker.db import migrate
from tracker.db.models import Base

EXPECTED_TABLES = {
    "tracked_tasks",
    "task_transitions",
    "provider_pauses",
    "provider_failures",
    "retention_runs",
    "webhook_endpoints",
    "webhook_subscriptions",
    "webhook_deliveries",
    "delivery_attempts",
    "api_tokens",
    "submissions",  # 0010
    "rate_buckets",  # 0010
    "process_heartbeats",
    "schedule_buckets",  # 0011
    "schedule_learning",  # 0011
    "scheduled_polls",  # 0012
}


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return str(request.getfixturevalue("empty_postgres_url"))


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_head_creates_every_table_and_the_due_index(empty_url: str) -> None:
    migrate.upgrade(empty_url)

    assert _tables(empty_url) == EXPECTED_TABLES
    engine = create_engine(empty_url)
    try:
        inspector = inspect(engine)
        indexes = {index["name"]: index for index in inspector.get_indexes("scheduled_polls")}
        assert indexes["ix_scheduled_polls_next_poll_at"]["column_names"] == ["next_poll_at"]
        # The claim's table has only the indexes the claim needs: its key and its due time.
        assert set(indexes) == {"ix_scheduled_polls_next_poll_at"}
        uniques = inspector.get_unique_constraints("tracked_tasks")
        assert {"provider", "task_id"} in [set(u["column_names"]) for u in uniques]
    finally:
        engine.dispose()


def test_downgrade_base_removes_everything_and_upgrade_works_again(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    migrate.downgrade(empty_url, "base")
    assert _tables(empty_url) == set()

    migrate.upgrade(empty_url)
    assert _tables(empty_url) == EXPECTED_TABLES


def test_models_describe_the_migrated_schema(empty_url: str) -> None:
    """The ORM classes and the migrations agree column by column."""
    migrate.upgrade(empty_url)
    engine = create_engine(empty_url)
    try:
        inspector = inspect(engine)
        for table in Base.metadata.sorted_tables:
            migrated = {column["name"] for column in inspector.get_columns(table.name)}
            assert migrated == set(table.columns.keys()), table.name
    finally:
        engine.dispose()


def test_autogenerate_finds_nothing_missing_from_the_migrations(empty_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    migrate.upgrade(empty_url)
    engine = create_engine(empty_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
