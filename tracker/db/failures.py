"""Which database errors mean "the database cannot serve this now", and how to say so in a line.

Decided by the exception's class and the server's own error code (PostgreSQL's SQLSTATE,
SQLite's error name), never by matching message text, which differs between versions and
locales. Anything not listed here is a bug or a constraint violation and is left to surface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

__all__ = ["Problem", "classify"]


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str  # one line for the user, with what to do where that is known
    missing_schema: bool = False


# SQLSTATE (or its two-character class) -> what it means for the user.
_POSTGRES: dict[str, str] = {
    "08": "the connection failed",
    "57P01": "the server is shutting down",
    "57P02": "the server crashed",
    "57P03": "the server is starting up or shutting down; try again",
    "57014": "the statement was cancelled (statement timeout)",
    "53100": "the server's disk is full",
    "53200": "the server is out of memory",
    "53300": "the server has too many connections",
    "55P03": "a lock could not be taken in time (lock timeout); try again",
    "40001": "the transaction clashed with another (serialization failure); try again",
    "40P01": "the transaction clashed with another (deadlock); try again",
    "25006": "the database is read-only",
    "3D000": "the database does not exist",
    "28000": "the server refused the credentials",
    "28P01": "the server refused the password",
}
_POSTGRES_MISSING_TABLE = "42P01"

_SQLITE: dict[str, str] = {
    "SQLITE_BUSY": "the database is locked by another process; try again",
    "SQLITE_LOCKED": "the database is locked; try again",
    "SQLITE_CANTOPEN": "cannot open the database file",
    "SQLITE_READONLY": "the database file is read-only",
    "SQLITE_FULL": "the disk is full",
    "SQLITE_IOERR": "the disk failed to read or write the database file",
    "SQLITE_NOTADB": "the file is not a SQLite database",
    "SQLITE_CORRUPT": "the database file is corrupt",
    "SQLITE_PERM": "permission denied on the database file",
}


def classify(error: DBAPIError, *, schema_present: Callable[[], bool]) -> Problem | None:
    """The problem `error` reports, or None when it is not about the database's availability.

    `schema_present` is asked only when the error could mean a missing table.
    """
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None)
    sqlite_name = getattr(original, "sqlite_errorname", None)
    if isinstance(sqlstate, str):
        if sqlstate == _POSTGRES_MISSING_TABLE:
            return (
                Problem("no tracker tables", missing_schema=True) if not schema_present() else None
            )
        reason = _POSTGRES.get(sqlstate) or _POSTGRES.get(sqlstate[:2])
        if reason is None:
            return None
        return Problem(_with_driver_text(reason, original) if sqlstate[:2] == "08" else reason)
    if isinstance(sqlite_name, str):
        if sqlite_name == "SQLITE_ERROR":  # also what a missing table reports
            return None if schema_present() else Problem("no tracker tables", missing_schema=True)
        for name, reason in _SQLITE.items():
            if sqlite_name == name or sqlite_name.startswith(name + "_"):
                return Problem(reason)
        return None
    if error.connection_invalidated or _is_psycopg_connection_failure(original):
        return Problem(_with_driver_text("the connection failed", original))
    return None


def _is_psycopg_connection_failure(original: BaseException | None) -> bool:
    """psycopg raises OperationalError without a SQLSTATE when it cannot reach the server."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(original, psycopg.OperationalError)


def _with_driver_text(reason: str, original: BaseException | None) -> str:
    """A connection failure's own words (host, port, refused...): they never hold parameters."""
    text = " ".join(str(original or "").split())[:300]
    return f"{reason}: {text}" if text else reason
