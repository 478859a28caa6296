"""Leasing due rows to one worker: the claim shared by polls and webhook deliveries.

One statement takes up to `limit` rows whose due time has come, stamps them with a fresh lease
token and pushes their due time to the lease's end. PostgreSQL skips rows another claim holds
(`FOR UPDATE SKIP LOCKED`); SQLite's dialect drops `FOR UPDATE`, but its write lock serializes
claims and the repeated due condition keeps them disjoint. A worker that dies leaves rows that
fall due again when the lease ends; only the holder of the token may write them before that.

With `keep_due` (scheduled polls) the claim writes the lease alone and leaves the due time as
it was; rows whose lease has not ended are then excluded by the lease's end instead. Only
unindexed columns change, so PostgreSQL updates each row in place on its page (a HOT update: no
index entry is written), and the chosen rows are found again by their physical address
(`ctid`), not through the primary key: a claim then reads and writes only the due index's newest
entries and the pages of the due rows, however many rows the table holds (bench/scale.py; the
table keeps half of each page free for those versions, migration 0013). Readers that want the
old meaning (due again at the lease's end) take the later of the two (`ScheduledPoll.due_at`).

A claim may also cap the rows in flight per group (`GroupCap`: deliveries per endpoint). Rows of
a group are then ranked by due time with a window function (`row_number() OVER (PARTITION BY
...)`, on SQLite and PostgreSQL alike) and only the first `cap - in flight` of each group are
candidates, where in flight means leased with the lease not ended. Each claim then holds rows of
one group only, so a group whose rows are slow to handle holds no other group's rows.

On PostgreSQL the transaction that claims commits without waiting for its WAL to reach the disk
(`SET LOCAL synchronous_commit TO OFF`: beat's tick no longer waits for an fsync). A claim lost
in a server crash only makes its rows due again unleased: the lease token a worker carries is
then unknown, so its writes find nothing to update, and the next claim polls the rows once.
A crash can cost a repeated poll, never a second transition or webhook.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, any_, func, literal_column, or_, select, text, update
from sqlalchemy.orm import InstrumentedAttribute, Session

__all__ = ["Claim", "GroupCap", "lease_due_rows"]


@dataclass(frozen=True, slots=True)
class Claim:
    """Rows (tasks to poll, or deliveries to send) leased to one worker message until
    `lease_expires_at`; only the holder of `lease_token` may write them before that."""

    lease_token: str
    row_ids: tuple[int, ...]
    lease_expires_at: datetime

    def to_message(self) -> dict[str, Any]:
        return {
            "lease_token": self.lease_token,
            "row_ids": list(self.row_ids),
            "lease_expires_at": self.lease_expires_at.isoformat(),
        }

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> Claim:
        # "task_pks" and "delivery_ids" are what workers before 0.2 sent; a message queued by
        # one during an upgrade is still understood.
        ids = message.get("row_ids", message.get("task_pks", message.get("delivery_ids")))
        if ids is None:
            raise ValueError("a claim message needs row_ids")
        return cls(
            lease_token=str(message["lease_token"]),
            row_ids=tuple(int(pk) for pk in ids),
            lease_expires_at=datetime.fromisoformat(message["lease_expires_at"]),
        )


@dataclass(frozen=True, slots=True)
class GroupCap:
    """At most `cap` rows with the same `column` value in flight (leased, lease not ended)."""

    column: InstrumentedAttribute[Any]
    cap: int


def _within_cap(
    model: Any,
    key: InstrumentedAttribute[int],
    due: InstrumentedAttribute[datetime | None],
    now: datetime,
    conditions: Sequence[ColumnElement[bool]],
    group: GroupCap,
) -> ColumnElement[bool]:
    """`key` is among the first `cap - in flight` due rows of its group, oldest first."""
    # In flight: leased and the lease not ended. A claim pushes `due` to the lease's end, so
    # those rows also have `due > now`, which lets the due index find them.
    in_flight = (
        select(group.column.label("group_key"), func.count().label("n"))
        .where(model.lease_expires_at > now, due > now)
        .group_by(group.column)
        .subquery("in_flight")
    )
    # Groups with no room left are left out before ranking (they would get none anyway): a
    # claim made while an endpoint has thousands of deliveries due and its cap in flight, as
    # after every batch sent, sorted them all to take none (bench/webhooks.py's state: 5-7 ms a
    # claim, 3-4 ms without). No NULL key in the list: one would make `NOT IN` exclude all.
    full = select(in_flight.c.group_key).where(
        in_flight.c.n >= group.cap, in_flight.c.group_key.is_not(None)
    )
    ranked = (
        select(
            key.label("id"),
            group.column.label("group_key"),
            func.row_number().over(partition_by=group.column, order_by=(due, key)).label("rank"),
        )
        .where(due <= now, *conditions, group.column.not_in(full))
        .subquery("ranked")
    )
    allowed = (
        select(ranked.c.id)
        .select_from(ranked.outerjoin(in_flight, in_flight.c.group_key == ranked.c.group_key))
        .where(ranked.c.rank <= group.cap - func.coalesce(in_flight.c.n, 0))
    )
    within: ColumnElement[bool] = key.in_(allowed)
    return within


def lease_due_rows(
    session: Session,
    model: Any,
    *,
    due: InstrumentedAttribute[datetime | None] | InstrumentedAttribute[datetime],
    now: datetime,
    limit: int,
    lease_s: float,
    batch_size: int,
    conditions: Sequence[ColumnElement[bool]] = (),
    group_cap: GroupCap | None = None,
    key: InstrumentedAttribute[int] | None = None,
    keep_due: bool = False,
) -> list[Claim]:
    """Lease up to `limit` rows of `model` whose `due` time is at or before `now`, in claims of
    at most `batch_size` rows (one worker message each). `now` is the database's clock.

    With `group_cap`, at most `group_cap.cap` rows of one group are in flight after the claim
    (those leased before it count), and each claim holds rows of one group only.

    `model` needs `lease_token` and `lease_expires_at` columns, and its primary key as `key`
    (default `model.id`): the claims' row ids are its values. On PostgreSQL the caller's
    transaction then commits without waiting for the WAL flush (module docstring): claim in a
    transaction that writes nothing a crash must keep.
    """
    key = model.id if key is None else key
    free = [or_(model.lease_expires_at.is_(None), model.lease_expires_at <= now)]
    guard = [due <= now, *(free if keep_due else ())]
    wanted = [*guard, *conditions]
    if group_cap is not None:
        # The window function sits in a subquery: PostgreSQL refuses FOR UPDATE beside one,
        # and the locking select below still skips rows that another claim holds.
        wanted.append(_within_cap(model, key, due, now, conditions, group_cap))
    postgres = session.get_bind().dialect.name == "postgresql"
    # On PostgreSQL with `keep_due`, rows are chosen by address (the module docstring).
    by_ctid = postgres and keep_due
    address: ColumnElement[Any] = literal_column("ctid") if by_ctid else key.expression
    candidates = (
        select(address)
        .select_from(model)
        .where(*wanted)
        .order_by(due)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    expires_at = now + timedelta(seconds=lease_s)
    token = uuid.uuid4().hex
    if postgres:
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))  # see the module docstring
        # `id = ANY(ARRAY(candidates))` makes PostgreSQL probe the primary key (or fetch the
        # addresses) for the chosen rows. With `id IN (candidates)` it may instead scan the due
        # index a second time for the guard below and hash-join the two (bench/scale.py: half a
        # claim's time at 1M rows).
        chosen = address == any_(func.array(candidates.scalar_subquery()))
    else:
        chosen = key.in_(candidates)
    values: dict[str, Any] = {"lease_token": token, "lease_expires_at": expires_at}
    if not keep_due:
        values[due.key] = expires_at
    statement = (
        update(model)
        # The outer guard repeats the due (and free) condition: a row another claim leased in
        # the meantime no longer matches it.
        .where(chosen, *guard)
        .values(values)
        .returning(key, *(() if group_cap is None else (group_cap.column,)))
        .execution_options(synchronize_session=False)
    )
    groups: dict[Any, list[int]] = defaultdict(list)
    for row in session.execute(statement):
        groups[row[1] if group_cap is not None else None].append(row[0])
    claims = []
    for key in sorted(groups, key=lambda k: (k is None, k)):
        ids = tuple(sorted(groups[key]))
        claims += [
            Claim(token, ids[start : start + batch_size], expires_at)
            for start in range(0, len(ids), batch_size)
        ]
    return claims
