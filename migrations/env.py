"""Alembic environment: runs the migrations against the configured database.

The URL comes from `config.attributes["database_url"]` when tracker calls Alembic itself, else
from the settings (TRACKER_DATABASE_URL), so `alembic upgrade head` works from a shell too.
"""

from __future__ import annotations

from alembic import context

from tracker.db import make_engine
from tracker.db.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    from tracker.settings import get_settings

    return get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_database_url())
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                # Batch migrations copy a table, drop it and rename the copy: with foreign keys
                # on, dropping it would first delete (ON DELETE CASCADE) every child row. The
                # pragma only works outside a transaction, so on the driver's connection.
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
