"""Heartbeats: each long-running process keeps one row saying who it is and when it was seen.

Beat records each tick it sends, a worker records itself every few seconds and the counts of its
last batch. Writes are throttled in the process (`HeartbeatRecorder`: at most one per
TRACKER_HEARTBEAT_INTERVAL_S), never one per poll. A process not seen for `gone_after_s` (3
heartbeat intervals or 10 ticks, whichever is longer) is *gone*; rows not seen for a day
(`FORGET_AFTER`) are deleted by the next process that starts or, hourly, by one that runs.
Times are the database's clock, so hosts with skewed clocks agree on who is alive.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tracker.db.clock import database_now
from tracker.db.models import ProcessHeartbeat
from tracker.db.upsert import insert_for
from tracker.errors import TrackerError
from tracker.settings import Settings

__all__ = [
    "BEAT",
    "FORGET_AFTER",
    "KINDS",
    "POLL_KINDS",
    "WEBHOOK_KINDS",
    "HeartbeatRecorder",
    "ProcessView",
    "forget_long_gone",
    "gone_after_s",
    "list_processes",
    "record",
    "successors",
]

log = logging.getLogger(__name__)

BEAT = "beat"
# A worker's kind says what it consumes: "polls" (ticks and poll batches), "webhooks"
# (deliveries), or "worker" (both: a plain `tracker worker`).
KINDS = (BEAT, "polls", "webhooks", "worker")
POLL_KINDS = frozenset({"polls", "worker"})
WEBHOOK_KINDS = frozenset({"webhooks", "worker"})
FORGET_AFTER = timedelta(days=1)
GONE_AFTER_INTERVALS = 3
GONE_AFTER_TICKS = 10
FORGET_EVERY_S = 3600.0


def gone_after_s(settings: Settings) -> float:
    """How long a process may go unseen before it counts as gone."""
    return max(
        GONE_AFTER_INTERVALS * settings.heartbeat_interval_s,
        GONE_AFTER_TICKS * settings.tick_interval_s,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessView:
    """One process as its heartbeat row shows it, judged at `now`."""

    host: str
    pid: int
    kind: str
    queue: str | None
    started_at: datetime
    last_seen_at: datetime
    last_batch_at: datetime | None
    last_batch: Mapping[str, Any] | None
    seen_s_ago: float
    alive: bool

    @property
    def name(self) -> str:
        """`polls@host pid 123`."""
        return f"{self.kind}@{self.host} pid {self.pid}"


def record(
    session: Session,
    *,
    kind: str,
    host: str,
    pid: int,
    started_at: datetime,
    queue: str | None = None,
    batch: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> datetime:
    """Upsert this process's row: seen now, and its last batch if `batch` is given.

    Returns the time written (the database's clock unless `now` is given).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown process kind {kind!r}; one of {', '.join(KINDS)}")
    moment = now or database_now(session)
    values: dict[str, Any] = {"last_seen_at": moment}
    if queue is not None:
        values["queue"] = queue
    if batch is not None:
        values |= {"last_batch_at": moment, "last_batch": dict(batch)}
    statement = insert_for(session, ProcessHeartbeat).values(
        host=host, pid=pid, kind=kind, started_at=started_at, **({"queue": queue} | values)
    )
    session.execute(
        statement.on_conflict_do_update(index_elements=["host", "pid", "kind"], set_=values)
    )
    return moment


def forget_long_gone(session: Session, *, now: datetime) -> int:
    """Delete the rows of processes not seen for `FORGET_AFTER`; returns how many."""
    result = session.execute(
        delete(ProcessHeartbeat).where(ProcessHeartbeat.last_seen_at < now - FORGET_AFTER)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def list_processes(
    session: Session, *, now: datetime, gone_after_s: float, kinds: frozenset[str] | None = None
) -> list[ProcessView]:
    """Every known process (of `kinds`), the most recently seen first."""
    query = select(ProcessHeartbeat).order_by(ProcessHeartbeat.last_seen_at.desc())
    if kinds is not None:
        query = query.where(ProcessHeartbeat.kind.in_(sorted(kinds)))
    views = []
    for row in session.scalars(query):
        ago = max(0.0, (now - row.last_seen_at).total_seconds())
        views.append(
            ProcessView(
                host=row.host,
                pid=row.pid,
                kind=row.kind,
                queue=row.queue,
                started_at=row.started_at,
                last_seen_at=row.last_seen_at,
                last_batch_at=row.last_batch_at,
                last_batch=dict(row.last_batch) if row.last_batch is not None else None,
                seen_s_ago=ago,
                alive=ago <= gone_after_s,
            )
        )
    return views


def successors(processes: list[ProcessView]) -> dict[str, int]:
    """Gone processes that were replaced: the name of each gone process whose host now runs a
    live process of the same kind started after it was last seen (a restart, a redeploy),
    mapped to that successor's pid. A gone process with no successor is a real absence.
    """
    found: dict[str, int] = {}
    for gone in processes:
        if gone.alive:
            continue
        for live in processes:
            if (
                live.alive
                and live.host == gone.host
                and live.kind == gone.kind
                and live.started_at >= gone.last_seen_at
            ):
                found[gone.name] = live.pid
                break
    return found


class HeartbeatRecorder:
    """One process's heartbeat, written at most every `every_s` seconds.

        `beat()` may be called as often as wanted (on every tick, every batch): it writes only when
        the last write is `every_s` old (a batch that comes sooner waits for the next write). Writes
        never raise: a failed one costs a heartbeat; the first of a run of failures logs a WARNING,
    the rest DEBUG, and one INFO line says when writes work again. `after_write` runs after
        every attempt (a worker's main process closes its connections there: see celery_app).
    """

    def __init__(
        self,
        *,
        kind: str,
        every_s: float,
        session_scope: Callable[[], AbstractContextManager[Session]],
        queue: str | None = None,
        pid: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        after_write: Callable[[], None] | None = None,
    ) -> None:
        self.kind, self.queue, self.every_s = kind, queue, every_s
        self.host = socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self._session_scope = session_scope
        self._after_write = after_write
        self._clock = clock
        self._lock = threading.Lock()
        self._last_write: float | None = None
        self._last_forget: float | None = None
        self._pending_batch: Mapping[str, Any] | None = None
        self._started_at: datetime | None = None
        self._failing = False  # the last write failed: say so once, and once when it works

    def beat(self, *, batch: Mapping[str, Any] | None = None, force: bool = False) -> bool:
        """Record that the process is alive (and `batch`, its latest batch's counts).

        Returns whether a row was written.
        """
        with self._lock:
            if batch is not None:
                self._pending_batch = batch
            now = self._clock()
            if not force and self._last_write is not None and now - self._last_write < self.every_s:
                return False
            self._last_write = now
            pending, self._pending_batch = self._pending_batch, None
            forget = self._last_forget is None or now - self._last_forget >= FORGET_EVERY_S
        try:
            with self._session_scope() as session:
                moment = database_now(session)
                if self._started_at is None:
                    self._started_at = moment
                record(
                    session,
                    kind=self.kind,
                    host=self.host,
                    pid=self.pid,
                    started_at=self._started_at,
                    queue=self.queue,
                    batch=pending,
                    now=moment,
                )
                if forget:
                    forget_long_gone(session, now=moment)
        except Exception as error:  # a heartbeat is never worth the process's real work
            self._failed(error)
            with self._lock:
                if pending is not None and self._pending_batch is None:
                    self._pending_batch = pending
            return False
        finally:
            if self._after_write is not None:
                self._after_write()
        if forget:
            with self._lock:
                self._last_forget = now
        if self._failing:
            self._failing = False
            log.info("recording the %s heartbeat works again", self.kind)
        return True

    def _failed(self, error: Exception) -> None:
        # tracker's own errors are one line without secrets; anything else is shown by type
        # only (a driver's message may hold statement parameters), its traceback at DEBUG.
        shown = str(error) if isinstance(error, TrackerError) else type(error).__name__
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        log.log(level, "could not record the %s heartbeat: %s", self.kind, shown)
        log.debug("could not record the %s heartbeat", self.kind, exc_info=True)
