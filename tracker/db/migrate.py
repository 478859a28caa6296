"""Runs the Alembic migrations from Python (`tracker db upgrade`, the tests, the demo).

The migrations travel inside the package: the repository keeps them in its top-level
`migrations/` (beside `alembic.ini`, for `alembic ...` from a shell in the clone), and
pyproject.toml maps that folder into the wheel as `tracker/migrations/`. So an installed tracker
(`pip install .`, a wheel, pipx) finds them with `importlib.resources`, and a checkout that runs
from its sources (an editable install, or none) uses the repository's folder. The Alembic config
is built here; `alembic.ini` is not needed at run time.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config

__all__ = ["alembic_config", "current_revision", "downgrade", "script_location", "upgrade"]


def script_location() -> Path:
    """The folder holding `env.py`, `script.py.mako` and `versions/`."""
    installed = resources.files("tracker") / "migrations"
    if isinstance(installed, Path) and (installed / "env.py").is_file():
        return installed  # installed from a wheel: site-packages/tracker/migrations
    # Running from a checkout (editable install or sources on sys.path): the package is
    # <root>/tracker and the migrations are <root>/migrations.
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if (checkout / "env.py").is_file():
        return checkout
    raise FileNotFoundError(
        f"tracker's migrations are missing: neither {installed} nor {checkout} holds env.py "
        "(this installation of tracker is incomplete; reinstall it)"
    )


def alembic_config(database_url: str) -> Config:
    """Alembic's config for tracker's migrations, pointed at `database_url`."""
    config = Config()
    # Config values are %-interpolated; a literal % in the path must be doubled.
    config.set_main_option("script_location", str(script_location()).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
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
