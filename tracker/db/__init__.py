"""The database: engine and sessions (`engine`), tables (`models`), leases on due rows
(`leasing`), the database's clock (`clock`) and the Alembic migrations (`migrate`).

`from tracker import db` gives the session scopes every use case runs in.
"""

from __future__ import annotations

from tracker.db.engine import (
    Database,
    describe_url,
    dispose_engine,
    get_engine,
    make_engine,
    read_scope,
    session_scope,
)

__all__ = [
    "Database",
    "describe_url",
    "dispose_engine",
    "get_engine",
    "make_engine",
    "read_scope",
    "session_scope",
]
