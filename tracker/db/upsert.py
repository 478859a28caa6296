"""`INSERT ... ON CONFLICT` for the database a session uses: where a unique constraint, not a
prior read, decides whether a row is new (registrations, per-task endpoints, provider pauses)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

__all__ = ["insert_for"]


def insert_for(session: Session, model: Any) -> Any:
    """An insert of `model` with `on_conflict_do_nothing` / `on_conflict_do_update`.

    PostgreSQL's and SQLite's inserts spell ON CONFLICT alike but are distinct classes; typed
    `Any` because the two share no common type that declares those methods.
    """
    dialect: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model)
