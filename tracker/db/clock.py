"""One clock for every host: due times and leases are read against the database's clock.

Beat claims rows whose `next_poll_at` has passed and stamps lease ends; workers on other hosts
write the next due times and decide whether a lease still leaves room for a poll. If each used
its own host's clock, a host running ahead would claim early and one running behind would poll
past its lease. So every such time is the database's: `database_now()` asks PostgreSQL once per
transaction that needs it (`clock_timestamp()`), and a worker turns the answer into an offset
from its own clock (`DatabaseClock`) so it can keep time during a batch without asking again.
SQLite lives in the process that uses it, so its clock is the host's.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

__all__ = ["DatabaseClock", "database_now", "utc_now"]


def utc_now() -> datetime:
    """This host's time, in UTC."""
    return datetime.now(UTC)


def database_now(session: Session) -> datetime:
    """The database server's current time, in UTC (the host's for SQLite)."""
    if session.get_bind().dialect.name != "postgresql":
        return utc_now()
    moment = session.scalar(select(func.clock_timestamp()))
    if not isinstance(moment, datetime):  # pragma: no cover - psycopg always returns one
        raise TypeError(f"clock_timestamp() returned {moment!r}")
    return moment.astimezone(UTC)


class DatabaseClock:
    """The database's time, kept from one reading by this host's monotonic clock."""

    def __init__(self, reading: datetime) -> None:
        self._reading = reading
        self._read_at = time.monotonic()

    @classmethod
    def read(cls, session: Session) -> DatabaseClock:
        return cls(database_now(session))

    def __call__(self) -> datetime:
        return self._reading + timedelta(seconds=time.monotonic() - self._read_at)
