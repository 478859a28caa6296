"""Leasing due rows to one worker: the claim shared by polls and webhook deliveries.

One statement takes up to `limit` rows whose due time has come, stamps them with a fresh lease
token and pushes their due time to the lease's end. PostgreSQL skips rows another claim holds
(`FOR UPDATE SKIP LOCKED`); SQLite's dialect drops `FOR UPDATE`, but its write lock serializes
claims and the repeated due condition keeps them disjoint. A worker that dies leaves rows that
fall due again when the lease ends; only the holder of the token may write them before that.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, any_, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

__all__ = ["Lease", "lease_due_rows", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Lease:
    token: str
    expires_at: datetime
    row_ids: tuple[int, ...]

    def batches(self, size: int) -> list[tuple[int, ...]]:
        """The leased ids in runs of at most `size`, one per worker message."""
        return [self.row_ids[start : start + size] for start in range(0, len(self.row_ids), size)]


def lease_due_rows(
    session: Session,
    model: Any,
    *,
    due: InstrumentedAttribute[datetime | None],
    now: datetime,
    limit: int,
    lease_s: float,
    conditions: Sequence[ColumnElement[bool]] = (),
) -> Lease:
    """Lease up to `limit` rows of `model` whose `due` time is at or before `now`.

    `model` needs `id`, `lease_token` and `lease_expires_at` columns.
    """
    candidates = (
        select(model.id)
        .where(due <= now, *conditions)
        .order_by(due)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    expires_at = now + timedelta(seconds=lease_s)
    token = uuid.uuid4().hex
    if session.get_bind().dialect.name == "postgresql":
        # `id = ANY(ARRAY(candidates))` makes PostgreSQL probe the primary key for the chosen
        # rows. With `id IN (candidates)` it may instead scan the due index a second time for the
        # guard below and hash-join the two (bench/scale.py: half a claim's time at 1M rows).
        chosen = model.id == any_(func.array(candidates.scalar_subquery()))
    else:
        chosen = model.id.in_(candidates)
    statement = (
        update(model)
        # The outer guard repeats the due condition: a row another claim leased in the meantime
        # no longer matches it.
        .where(chosen, due <= now)
        .values({"lease_token": token, "lease_expires_at": expires_at, due.key: expires_at})
        .returning(model.id)
        .execution_options(synchronize_session=False)
    )
    return Lease(token, expires_at, tuple(sorted(session.scalars(statement))))
