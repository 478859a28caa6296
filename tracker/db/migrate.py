"""Runs the Alembic migrations from Python (`tracker db upgrade`, the tests, the demo)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

__all__ = ["alembic_config", "downgrade", "upgrade"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    """Alembic's config for the repository's `migrations/`, pointed at `database_url`."""
    ini = PROJECT_ROOT / "alembic.ini"
    if not ini.exists():
        raise FileNotFoundError(
            f"{ini} not found: tracker runs its migrations from a checkout of the repository "
            "(install it with `pip install -e .` from the clone)"
        )
    config = Config(str(ini))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    """The schema revision the database is at; None for a database without tracker's schema."""
    from alembic.migration import MigrationContext

    from tracker.db.engine import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
