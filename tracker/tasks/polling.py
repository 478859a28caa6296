"""Claim due tasks, poll a batch of them, and write what each poll decided.

A claim leases due rows of `scheduled_polls` (`leasing.py`: the narrow table of the live tasks'
due times and leases) and splits them into batches. A batch only writes rows
that still carry its token and the status it read, so a second tick, a second beat, an untrack
or a slow worker whose lease ran out can never record a transition twice. A worker that dies
leaves rows that fall due again when the lease ends: the database, not the broker, knows what
is due. A transition and its webhook deliveries (the outbox) are written in one transaction.

A batch may hold tasks of several providers (video and image): each task is asked through its
own provider's client and scheduled by its own provider's policy, and each provider's answers
are weighed on their own (`pauses.py`): a pause they call for (no credits, a refused key, a
Retry-After, minutes of failed connections) pauses that provider only, with its own probe poll
and its own run of failed connections, which only its own answers end.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, Update, bindparam, func, select, text, update
from sqlalchemy.orm import Session

from tracker.db.clock import DatabaseClock
from tracker.db.leasing import Claim, lease_due_rows
from tracker.db.models import ScheduledPoll, TrackedTask
from tracker.errors import DatabaseUnavailable
from tracker.settings import Settings
from tracker.states import TaskStatus
from tracker.tasks import adaptive, pauses, rescheduling
from tracker.tasks.decide import PauseCause, PollOutcome, ProviderPause, TaskSnapshot, decide
from tracker.tasks.schedule import PollPolicy
from tracker.tasks.transitions import record_transition
from tracker.upstream.base import PollResult, Provider, TaskMissing, TaskReport, Unreachable

__all__ = ["BatchSummary", "claim_due_tasks", "poll_batch", "rate_limited_claims"]

log = logging.getLogger(__name__)


def rate_limited_claims(settings: Settings) -> int | None:
    """Under TENSORSLAB_MAX_REQUESTS_PER_S, how many tasks may be claimed and not yet polled
    at once: what the shared bucket can serve until the next tick (its refill, plus the
    burst). None without a cap. Claiming more would only park tasks in leases (and batches in
    the broker's queue) while the oldest due wait; claiming this many, oldest due first, gives
    every due task its turn, the longest waiting first."""
    rate = settings.tensorslab_max_requests_per_s
    if rate is None:
        return None
    return max(1, math.ceil(rate * settings.tick_interval_s) + settings.rate_limit_burst)


def claim_due_tasks(
    session: Session,
    *,
    now: datetime,
    limit: int,
    lease_s: float,
    batch_size: int,
    in_flight_cap: int | None = None,
) -> list[Claim]:
    """Lease up to `limit` due tasks of unpaused providers, in claims of `batch_size`.

    With `in_flight_cap` (`rate_limited_claims`), at most that many tasks are leased with the
    lease not ended, those of earlier claims included. `now` is the database's clock
    (`tracker.db.clock.database_now`).
    """
    if in_flight_cap is not None:
        limit = min(limit, in_flight_cap - _in_flight(session, now=now))
        if limit <= 0:
            return []
    probing = pauses.probing_providers(session, now=now)
    claims = lease_due_rows(
        session,
        ScheduledPoll,
        key=ScheduledPoll.task_pk,
        due=ScheduledPoll.next_poll_at,
        now=now,
        limit=limit,
        lease_s=lease_s,
        batch_size=batch_size,
        conditions=[
            ScheduledPoll.provider.not_in(pauses.blocked_condition(now)),
            ScheduledPoll.provider.not_in(probing),
        ],
        keep_due=True,
    )
    # A pause whose time is up is lifted only by an answer: one probe poll per provider, and
    # no other until it has answered (or its lease has ended).
    for provider in probing:
        lease_end = now + timedelta(seconds=lease_s)
        if not pauses.start_probe(session, provider, now=now, until=lease_end):
            continue  # another tick's probe is in flight
        probe = lease_due_rows(
            session,
            ScheduledPoll,
            key=ScheduledPoll.task_pk,
            due=ScheduledPoll.next_poll_at,
            now=now,
            limit=1,
            lease_s=lease_s,
            batch_size=1,
            conditions=[ScheduledPoll.provider == provider],
            keep_due=True,
        )
        if probe:
            log.info("polling of %s is paused: its time is up, one probe poll decides", provider)
        else:  # nothing due: the next due task will be the probe
            pauses.start_probe(session, provider, now=lease_end, until=now)
        claims += probe
    return claims


def _in_flight(session: Session, *, now: datetime) -> int:
    """Tasks leased now. A claim leaves `next_poll_at` in the past (`keep_due`), so they all lie
    among the due rows: the due index finds them without reading every live row."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(ScheduledPoll)
            .where(ScheduledPoll.next_poll_at <= now, ScheduledPoll.lease_expires_at > now)
        )
        or 0
    )


@dataclass(frozen=True, slots=True)
class _Leased:
    task_pk: int
    task_id: str
    provider: str
    snapshot: TaskSnapshot


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What one batch did: how many were polled and ended, and the outcomes by label."""

    polled: int
    skipped: int  # still leased, but too close to the lease's end to start a poll
    ended: int  # tasks this batch moved to a terminal status (their webhooks are in the outbox)
    outcomes: dict[str, int]
    released: int = 0  # no longer leased when their turn came (untracked, or lease lost): unasked
    deferred: int = 0  # no rate limit token in time: unasked, due again at once


# How long one batch may wait for rate limit tokens (TENSORSLAB_MAX_REQUESTS_PER_S) before it
# hands its remaining tasks back as due: the next tick claims them again, oldest due first.
RATE_WAIT_BOUND_S = 10.0


# How stale the batch's view of which rows it still holds may be when a poll starts: at most
# one query per this many seconds re-reads it, however many polls the batch starts.
LEASE_RECHECK_S = 0.5


class _LeaseCheck:
    """Which of a batch's rows still carry its lease token, re-read at most every
    `LEASE_RECHECK_S` in one query, so that a task untracked while the batch runs (untrack
    clears the token) is not asked about. Shared by the batch's fetch threads."""

    def __init__(
        self, claim: Claim, session_scope: SessionFactory, held: set[int], *, every_s: float
    ) -> None:
        self._claim = claim
        self._session_scope = session_scope
        self._held = held
        self._every_s = every_s
        self._read_at = time.monotonic()
        self._lock = threading.Lock()

    def holds(self, task_pk: int) -> bool:
        with self._lock:
            if time.monotonic() - self._read_at >= self._every_s and task_pk in self._held:
                try:
                    self._held = self._read()
                except DatabaseUnavailable as error:  # keep the last view: writes are guarded
                    log.debug("could not re-check the batch's lease: %s", error)
                self._read_at = time.monotonic()
            return task_pk in self._held

    def _read(self) -> set[int]:
        with self._session_scope() as session:
            return set(
                session.scalars(
                    select(ScheduledPoll.task_pk).where(
                        ScheduledPoll.task_pk.in_(self._held),
                        ScheduledPoll.lease_token == self._claim.lease_token,
                    )
                )
            )


SessionFactory = Callable[[], Any]  # a context manager yielding a Session in a transaction


def poll_batch(
    claim: Claim,
    *,
    provider: Provider | Mapping[str, Provider],
    session_scope: SessionFactory,
    policy: PollPolicy | Mapping[str, PollPolicy],
    fetch_margin_s: float,
    concurrency: int = 1,
    now: Callable[[], datetime] | None = None,
    rng: random.Random | None = None,
    read_scope: SessionFactory | None = None,
    rate_limit: Callable[[float], bool] | None = None,
    early_ages: Callable[[Session], Mapping[adaptive.Bucket, float]] | None = None,
) -> BatchSummary:
    """Poll the claimed tasks and write each outcome; tasks no longer leased are skipped.

    No transaction is open while upstream is asked. A poll is started only while at least
    `fetch_margin_s` is left before the lease ends; pass the provider's whole-attempt deadline
    (`tracker.http_deadline`: connect to last byte, whatever upstream does) so that no poll is in
    flight when the lease ends. The others are not started: those rows fall due again. Before
    each poll the lease is checked again (one query in `read_scope`, default `session_scope`,
    at most every `LEASE_RECHECK_S` per batch): a task untracked meanwhile is not asked about.
    Times are the database's (`now` defaults to a `DatabaseClock` read with the leased rows),
    like the lease's end that beat stamped.

    `provider` and `policy` are one client and one schedule, or one per provider name; a task
    whose provider has no client here is not asked about (it falls due again).

    With `rate_limit` (the shared bucket: takes a token waiting at most the seconds given, and
    says whether it did), each poll first takes a token, waiting at most until
    `RATE_WAIT_BOUND_S` after the batch started and never past the lease's margin; a task that
    got none is deferred: its lease is dropped and it is due again at the batch's start, so the
    next claim (oldest due first) takes it before tasks that fell due later.

    With `early_ages` (the adaptive schedule: the learned early age by bucket, read in
    `read_scope`), each answer's next poll follows its bucket's early age (`adaptive.py`), and
    a task's first poll logs its bucket.
    """
    rng = rng or random.Random()
    providers = dict(provider) if isinstance(provider, Mapping) else {provider.name: provider}
    with (read_scope or session_scope)() as session:  # only reads: no write lock on SQLite
        leased = _load_leased(session, claim)
        learned = early_ages(session) if early_ages is not None else None
        if now is None:
            now = DatabaseClock.read(session)
    clock = now
    deadline = claim.lease_expires_at - timedelta(seconds=fetch_margin_s)
    lease = _LeaseCheck(
        claim,
        read_scope or session_scope,
        {item.task_pk for item in leased},
        every_s=LEASE_RECHECK_S,
    )
    released: set[int] = set()
    deferred: set[int] = set()
    started_at, started = clock(), time.monotonic()
    unserved: set[str] = set()  # providers of leased tasks this batch has no client for

    def fetch(item: _Leased) -> tuple[_Leased, PollResult, datetime] | None:
        if clock() >= deadline:
            return None
        if not lease.holds(item.task_pk):
            released.add(item.task_pk)
            return None
        client = providers.get(item.provider)
        if client is None:
            unserved.add(item.provider)
            return None
        if rate_limit is not None:
            lease_left_s = (deadline - clock()).total_seconds()
            wait_s = min(lease_left_s, started + RATE_WAIT_BOUND_S - time.monotonic())
            if wait_s <= 0 or not rate_limit(wait_s):
                deferred.add(item.task_pk)
                return None
            if clock() >= deadline:
                return None
        result = client.fetch(item.task_id)
        return item, result, clock()

    if concurrency > 1 and len(leased) > 1:
        answers = list(_fetch_pool(concurrency).map(fetch, leased))
    else:
        answers = [fetch(item) for item in leased]
    done = [answer for answer in answers if answer is not None]

    with session_scope() as session:
        labels, ended, paused = _write_outcomes(
            session, claim, done, policy=policy, rng=rng, early_ages=learned
        )
        if deferred:
            _release_deferred(session, claim, deferred, due_at=started_at)
        # Held rows that `_load_leased` left out belong to tasks that have ended.
        ended_held = set(claim.row_ids) - {item.task_pk for item in leased}
        rescheduling.drop_ended(session, claim.lease_token, ended_held)
    summary = BatchSummary(
        polled=len(done),
        skipped=len(leased) - len(done) - len(released) - len(deferred),
        ended=ended,
        outcomes=dict(labels),
        released=len(released),
        deferred=len(deferred),
    )
    log.info("polled %d tasks (%d ended): %s", summary.polled, summary.ended, summary.outcomes)
    for provider_name, pause in paused:
        _log_pause(provider_name, pause)
    if summary.released:
        log.info("%d claimed tasks were untracked or re-leased before their poll", summary.released)
    if summary.deferred:
        log.info(
            "%d claimed tasks wait for the rate limit (TENSORSLAB_MAX_REQUESTS_PER_S): due again",
            summary.deferred,
        )
    if unserved:
        log.warning("no client for provider(s) %s here: their tasks were not polled", unserved)
    if summary.skipped and not unserved:
        log.warning(
            "%d claimed tasks were not polled: their lease would have ended before an answer "
            "(raise TRACKER_POLL_LEASE_S or TRACKER_POLL_CONCURRENCY, or lower the batch size)",
            summary.skipped,
        )
    return summary


_fetch_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_fetch_pools_lock = threading.Lock()


def _policy_of(policy: PollPolicy | Mapping[str, PollPolicy], provider: str) -> PollPolicy:
    return policy if isinstance(policy, PollPolicy) else policy[provider]


def _fetch_pool(concurrency: int) -> ThreadPoolExecutor:
    """This process's threads for upstream requests, kept between batches (not made per batch)."""
    key = (os.getpid(), concurrency)  # a forked child makes its own: threads do not survive fork
    with _fetch_pools_lock:
        pool = _fetch_pools.get(key)
        if pool is None:
            pool = _fetch_pools[key] = ThreadPoolExecutor(
                max_workers=concurrency, thread_name_prefix="tracker-poll"
            )
        return pool


def _release_deferred(
    session: Session, claim: Claim, task_pks: set[int], *, due_at: datetime
) -> None:
    """Hand rows this batch did not poll for want of a rate token back to the claim: due at
    `due_at`, unleased (only rows still carrying this batch's token)."""
    session.execute(
        update(ScheduledPoll)
        .where(
            ScheduledPoll.task_pk.in_(sorted(task_pks)),
            ScheduledPoll.lease_token == claim.lease_token,
        )
        .values(lease_token=None, lease_expires_at=None, next_poll_at=due_at)
        .execution_options(synchronize_session=False)
    )


def _load_leased(session: Session, claim: Claim) -> list[_Leased]:
    rows = session.execute(
        select(
            TrackedTask.id,
            TrackedTask.task_id,
            TrackedTask.provider,
            TrackedTask.status,
            TrackedTask.created_at,
            TrackedTask.not_found_since,
            TrackedTask.consecutive_errors,
        )
        .join(ScheduledPoll, ScheduledPoll.task_pk == TrackedTask.id)
        .where(
            ScheduledPoll.task_pk.in_(claim.row_ids),
            ScheduledPoll.lease_token == claim.lease_token,
        )
    ).all()
    return [
        _Leased(
            task_pk=row.id,
            task_id=row.task_id,
            provider=row.provider,
            snapshot=TaskSnapshot(
                status=TaskStatus(row.status),
                created_at=row.created_at,
                not_found_since=row.not_found_since,
                consecutive_errors=row.consecutive_errors,
            ),
        )
        for row in rows
        if not TaskStatus(row.status).is_terminal
    ]


def _write_outcomes(
    session: Session,
    claim: Claim,
    done: list[tuple[_Leased, PollResult, datetime]],
    *,
    policy: PollPolicy | Mapping[str, PollPolicy],
    rng: random.Random,
    early_ages: Mapping[adaptive.Bucket, float] | None = None,
) -> tuple[Counter[str], int, list[tuple[str, ProviderPause]]]:
    """Write each answer's outcome to the rows this batch still holds.

    Returns the outcome labels, how many tasks ended, and the pauses this batch started, with
    their provider's name: each provider's answers are weighed on their own (`_record_pauses`).

    The held rows are locked first (on SQLite the transaction already holds the write lock), so
    which rows may be written is known up front. Outcomes without a transition, nearly all of
    them, go out as two executemany of prepared statements (the tasks, then their scheduled
    polls) instead of statements built per row; transitions are written one by one with their
    history row and webhook deliveries.
    """
    labels: Counter[str] = Counter()
    ended = 0
    if not done:
        return labels, ended, []
    batch_pauses: dict[str, list[ProviderPause]] = defaultdict(list)
    held = _lock_held_rows(session, claim, [item.task_pk for item, _, _ in done])
    unchanged: dict[frozenset[str], list[dict[str, Any]]] = defaultdict(list)
    rescheduled: list[rescheduling.NextPoll] = []
    unscheduled: list[int] = []
    transitions = 0
    for item, result, answered_at in done:
        policy_now = _policy_of(policy, item.provider)
        if early_ages is not None:
            policy_now, bucket = adaptive.policy_for(policy_now, item.provider, result, early_ages)
            if item.snapshot.status is TaskStatus.REGISTERED and _seen_unfinished(result):
                _log_bucket(item.task_id, bucket, policy_now)
        outcome = decide(item.snapshot, result, now=answered_at, policy=policy_now, rng=rng)
        log.debug(
            "task %s: polled, %s", item.task_id, _label(result), extra={"task_id": item.task_id}
        )
        if held.get(item.task_pk) != item.snapshot.status.value:
            labels["lease_lost"] += 1
        elif outcome.new_status is None:
            params = _write_params(item, outcome, answered_at, _seen_unfinished(result))
            unchanged[_written_columns(params)].append(params)
            if outcome.next_poll_at is None:
                unscheduled.append(item.task_pk)
            else:
                rescheduled.append(_next_poll(item, outcome.next_poll_at))
            labels[_label(result)] += 1
        else:
            written = _write_outcome(
                session, claim, item, outcome, answered_at, _seen_unfinished(result)
            )
            labels[_label(result) if written else "lease_lost"] += 1
            ended += written and outcome.is_terminal
            transitions += written
        if outcome.provider_pause is not None:
            batch_pauses[item.provider].append(outcome.provider_pause)
    for statement, rows in ((_write_statement(c), rows) for c, rows in unchanged.items()):
        written = session.execute(statement, rows).rowcount  # type: ignore[attr-defined]
        if written != len(rows):  # impossible while the rows are locked: refuse a partial write
            raise RuntimeError(f"wrote {written} of {len(rows)} locked rows")
    rescheduling.reschedule(session, claim.lease_token, rescheduled)
    rescheduling.unschedule(session, claim.lease_token, unscheduled)
    answers: dict[str, list[tuple[_Leased, PollResult, datetime]]] = defaultdict(list)
    for answer in done:
        answers[answer[0].provider].append(answer)
    started: list[tuple[str, ProviderPause]] = []
    for provider_name in sorted(answers):
        pause = _record_pauses(
            session,
            answers[provider_name],
            provider_name,
            batch_pauses[provider_name],
            policy=_policy_of(policy, provider_name),
        )
        if pause is not None:
            started.append((provider_name, pause))
    if not transitions and session.get_bind().dialect.name == "postgresql":
        # No status changed, so no webhook rests on this transaction: it commits without
        # waiting for its WAL to reach the disk. A server crash can lose only bookkeeping
        # (poll counts, due times, error streaks), and the next poll writes it again.
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))
    return labels, ended, started


def _record_pauses(
    session: Session,
    done: list[tuple[_Leased, PollResult, datetime]],
    provider_name: str,
    batch_pauses: list[ProviderPause],
    *,
    policy: PollPolicy,
) -> ProviderPause | None:
    """What a batch's answers from one provider (`done`) mean for that provider as a whole: a
    pause to record (the longest its answers asked for, or `unreachable` when every request to
    it has failed to connect for `policy.unreachable_after_s`), or, for an answer that is no
    reason to pause, the end of a run of failed connections and of a pause whose time is up.
    Returns a pause it started."""
    unreachable = [(at, result) for _, result, at in done if isinstance(result, Unreachable)]
    if len(unreachable) == len(done):
        first_at, last_at = min(at for at, _ in unreachable), max(at for at, _ in unreachable)
        pause = pauses.note_unreachable(
            session,
            provider_name,
            first_at=first_at,
            last_at=last_at,
            error=unreachable[-1][1].message,
            after_s=policy.unreachable_after_s,
            pause_s=policy.unreachable_pause_s,
        )
        if pause is not None:
            batch_pauses.append(pause)
    else:
        pauses.note_reached(session, provider_name)
    pause = pauses.longest(batch_pauses)
    if pause is not None:
        at = max(at for _, _, at in done)
        return pause if pauses.pause_provider(session, provider_name, pause, at=at) else None
    answered_at = max(at for _, _, at in done)
    lifted = pauses.lift_expired_pause(session, provider_name, at=answered_at)
    if lifted is not None and lifted != PauseCause.RATE_LIMITED:
        log.info(
            "polling of %s resumed: upstream answered again (the %s pause is lifted)",
            provider_name,
            lifted,
        )
    return None


def _log_bucket(task_id: str, bucket: adaptive.Bucket | None, policy: PollPolicy) -> None:
    """At a task's first answer that it is live, under the adaptive schedule: its bucket and
    what it means for its next poll."""
    if bucket is None:
        schedule = "no bucket in its details: the default schedule"
    elif policy.early_age_s > policy.quiet_until_s:
        schedule = f"next poll at age {policy.early_age_s:.0f} s (learned early age)"
    elif policy.early_age_s:
        schedule = "learned early age within the quiet period: the default schedule"
    else:
        schedule = "too few samples yet: the default schedule"
    label = f"bucket {bucket.label()}: " if bucket is not None else ""
    log.info("task %s: %s%s", task_id, label, schedule, extra={"task_id": task_id})


def _log_pause(provider_name: str, pause: ProviderPause) -> None:
    """One line when a pause starts (not per poll, not when a probe extends it): a WARNING,
    but INFO for a 429's pause, which ends by itself and is upstream's ordinary way to pace."""
    level = logging.INFO if pause.cause is PauseCause.RATE_LIMITED else logging.WARNING
    log.log(
        level,
        "polling of %s paused (%s) until %s UTC: %s%s",
        provider_name,
        pause.cause.value,
        f"{pause.until:%Y-%m-%d %H:%M:%S}",
        pause.reason,
        _PAUSE_ADVICE.get(pause.cause, "").format(resume=pauses.resume_command(provider_name)),
    )


_PAUSE_ADVICE = {
    PauseCause.UNAUTHORIZED: "; check TENSORSLAB_API_KEY (one probe poll re-checks every "
    "TRACKER_AUTH_PAUSE_S; {resume} lifts it now)",
    PauseCause.UNREACHABLE: "; check TENSORSLAB_BASE_URL and the network (one probe poll "
    "re-checks every TRACKER_UNREACHABLE_PAUSE_S; {resume} lifts it now)",
    PauseCause.NO_CREDITS: "; buy credits, then {resume}",
}


def _lock_held_rows(session: Session, claim: Claim, task_pks: list[int]) -> dict[int, str]:
    """Lock the scheduled polls that still carry this claim's token, then their tasks; the
    tasks' status by primary key. Scheduled poll first, then task: the order untrack and erase
    take them in too, so none of them waits on another in a circle."""
    held = session.scalars(
        select(ScheduledPoll.task_pk)
        .where(ScheduledPoll.task_pk.in_(task_pks), ScheduledPoll.lease_token == claim.lease_token)
        .order_by(ScheduledPoll.task_pk)
        .with_for_update()
    ).all()
    if not held:
        return {}
    rows = session.execute(
        select(TrackedTask.id, TrackedTask.status)
        .where(TrackedTask.id.in_(held))
        .order_by(TrackedTask.id)
        .with_for_update(key_share=True)  # FOR NO KEY UPDATE: no clash with FK checks
    ).all()
    return {row.id: row.status for row in rows}


# Columns written only when the poll has a value for them; otherwise what is stored stays.
# `status` and `completed_at` are written only with a transition.
_KEPT_IF_NONE = (
    "result_urls",
    "upstream_message",
    "details",
    "last_seen_unfinished_at",
    "status",
    "completed_at",
)


def _seen_unfinished(result: PollResult) -> bool:
    """Whether upstream answered with a live status: a sighting of the task unfinished."""
    return isinstance(result, TaskReport) and not result.status.is_terminal


def _write_params(
    item: _Leased, outcome: PollOutcome, at: datetime, seen_unfinished: bool
) -> dict[str, Any]:
    """The parameters of `_write_statement` for one poll's outcome."""
    params: dict[str, Any] = {
        "b_pk": item.task_pk,
        "b_read_status": item.snapshot.status.value,
        "b_at": at,
        "b_not_found_since": outcome.not_found_since,
        "b_consecutive_errors": outcome.consecutive_errors,
        "b_last_error": outcome.last_error,
        "b_error_increment": 1 if outcome.counts_as_error else 0,
    }
    if outcome.new_status is not None:
        params["b_status"] = outcome.new_status.value
        if outcome.new_status.is_terminal:
            params["b_completed_at"] = at
    if outcome.result_urls is not None:
        params["b_result_urls"] = list(outcome.result_urls)
    if outcome.upstream_message is not None:
        params["b_upstream_message"] = outcome.upstream_message
    if outcome.details is not None:
        params["b_details"] = dict(outcome.details)
    if seen_unfinished:
        params["b_last_seen_unfinished_at"] = at
    return params


def _written_columns(params: dict[str, Any]) -> frozenset[str]:
    return frozenset(name for name in _KEPT_IF_NONE if f"b_{name}" in params)


def _next_poll(item: _Leased, due_at: datetime) -> rescheduling.NextPoll:
    return rescheduling.NextPoll(item.task_pk, item.provider, due_at)


@functools.cache
def _write_statement(optional: frozenset[str]) -> Update:
    """UPDATE one held task after a poll, guarded by the status read (its scheduled poll,
    locked with the lease token checked, says the row is held); the `optional` columns are set
    too. Cached: the same few shapes serve every batch."""
    table = cast(Table, TrackedTask.__table__)
    values: dict[Any, Any] = {
        table.c.last_polled_at: bindparam("b_at"),
        table.c.updated_at: bindparam("b_at"),
        table.c.not_found_since: bindparam("b_not_found_since"),
        table.c.consecutive_errors: bindparam("b_consecutive_errors"),
        table.c.last_error: bindparam("b_last_error"),
        table.c.poll_count: table.c.poll_count + 1,
        table.c.error_count: table.c.error_count + bindparam("b_error_increment"),
    }
    for name in sorted(optional):
        values[table.c[name]] = bindparam(f"b_{name}")
    return (
        update(table)
        .where(table.c.id == bindparam("b_pk"), table.c.status == bindparam("b_read_status"))
        .values(values)
    )


def _write_outcome(
    session: Session,
    claim: Claim,
    item: _Leased,
    outcome: PollOutcome,
    at: datetime,
    seen_unfinished: bool,
) -> bool:
    """Write one poll's outcome, and its transition if any, if the lease still holds."""
    params = _write_params(item, outcome, at, seen_unfinished)
    result = session.execute(_write_statement(_written_columns(params)), params)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    if outcome.next_poll_at is None:
        rescheduling.unschedule(session, claim.lease_token, [item.task_pk])
    else:
        rescheduling.reschedule(
            session, claim.lease_token, [_next_poll(item, outcome.next_poll_at)]
        )
    if outcome.new_status is not None:
        note = _transition_note(outcome)
        record_transition(
            session,
            task_pk=item.task_pk,
            from_status=item.snapshot.status,
            to_status=outcome.new_status,
            at=at,
            payload=outcome.payload,
            note=note,
        )
        log.info(
            "task %s: %s -> %s%s",
            item.task_id,
            item.snapshot.status.value,
            outcome.new_status.value,
            f" ({note[:200]})" if note else "",
            extra={"task_id": item.task_id},
        )
    return True


def _transition_note(outcome: PollOutcome) -> str | None:
    if outcome.new_status is TaskStatus.EXPIRED:
        return "tracked for longer than TRACKER_MAX_TRACKING_AGE_S"
    if outcome.new_status is TaskStatus.NOT_FOUND:
        return outcome.last_error
    return outcome.upstream_message


def _label(result: PollResult) -> str:
    if isinstance(result, TaskReport):
        return result.status.value
    if isinstance(result, TaskMissing):
        return "missing"
    return result.kind
