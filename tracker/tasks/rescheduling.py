"""Write a polled batch's next due times: each held scheduled poll is deleted and inserted again.

Why not an UPDATE: PostgreSQL keeps an updated row on its page when it fits, so a row stays
where its task was registered for as long as the task lives, and the rows due at one tick lie
spread over the whole table, one page each (bench/scale.py: a claim at 1,000,000 live tasks
touched 1,000 pages for 1,000 due rows and took 1.5x its time at 10,000 live tasks). Inserted
again, in due order and in one statement, the rows a batch reschedules fill the same few pages;
the rows due at one tick were polled at one tick, so a claim finds them together and its cost
follows the due rows, not how many tasks are live. Old versions are dead either way (an UPDATE
of the indexed due time is not a HOT update); autovacuum's per-table threshold (migration 0012)
reclaims them.

A delete breaks the update chain that a concurrent statement waiting on the row would follow:
an untrack whose DELETE waited on a batch's lock finds the old row gone and misses the new one.
The task ends all the same (untrack's status write follows the batch's); the scheduled poll it
missed is removed by the next batch that claims it (`drop_ended`), which never asks upstream
about an ended task.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Delete, Insert, Table, bindparam, delete, insert
from sqlalchemy.orm import Session

from tracker.db.models import ScheduledPoll

__all__ = ["NextPoll", "drop_ended", "reschedule", "unschedule"]


@dataclass(frozen=True, slots=True)
class NextPoll:
    """One held scheduled poll's next due time."""

    task_pk: int
    provider: str
    due_at: datetime


def reschedule(session: Session, token: str, polls: Sequence[NextPoll]) -> None:
    """Give each scheduled poll held under `token` its next due time, unleased.

    The caller holds the rows (locked, token checked): all of them must be written, or the
    transaction is refused (`RuntimeError`).
    """
    if not polls:
        return
    unschedule(session, token, [poll.task_pk for poll in polls])
    ordered = sorted(polls, key=lambda poll: (poll.due_at, poll.task_pk))
    session.execute(
        _insert_statement(),
        [
            {"b_pk": poll.task_pk, "b_provider": poll.provider, "b_due_at": poll.due_at}
            for poll in ordered
        ],
    )


def unschedule(session: Session, token: str, task_pks: Collection[int]) -> None:
    """Delete the scheduled polls held under `token`: their tasks are never polled again, or
    (`reschedule`) are inserted again. All of them must be held (`RuntimeError` otherwise)."""
    if not task_pks:
        return
    rows = [{"b_pk": pk, "b_token": token} for pk in sorted(task_pks)]
    deleted = session.execute(_delete_statement(), rows).rowcount  # type: ignore[attr-defined]
    if deleted != len(rows):  # impossible while the rows are locked: refuse a partial write
        raise RuntimeError(f"wrote {deleted} of {len(rows)} locked rows")


def drop_ended(session: Session, token: str, task_pks: Collection[int]) -> None:
    """Delete the scheduled polls, still held under `token`, of tasks that have ended (an
    untrack that raced a batch's reschedule leaves one: the module docstring)."""
    if not task_pks:
        return
    session.execute(
        _delete_statement(), [{"b_pk": pk, "b_token": token} for pk in sorted(task_pks)]
    )


@functools.cache
def _delete_statement() -> Delete:
    table = cast(Table, ScheduledPoll.__table__)
    return delete(table).where(
        table.c.task_pk == bindparam("b_pk"), table.c.lease_token == bindparam("b_token")
    )


@functools.cache
def _insert_statement() -> Insert:
    table = cast(Table, ScheduledPoll.__table__)
    return insert(table).values(
        {
            table.c.task_pk: bindparam("b_pk"),
            table.c.provider: bindparam("b_provider"),
            table.c.next_poll_at: bindparam("b_due_at"),
        }
    )
