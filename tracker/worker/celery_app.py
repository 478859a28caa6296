"""The Celery app and its tasks, kept thin: `tick` claims what is due, `poll` polls a batch of
tasks, `deliver` sends a batch of webhook deliveries, `prune` applies retention once a day,
`learn` refreshes what the adaptive schedule learned from the tasks that completed.

Celery's own testing guide says a task "is much like a web view": the logic lives in
`polling.py`; these wrappers only build per-process resources and pass messages.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from celery import Celery
from celery.signals import (
    beat_embedded_init,
    before_task_publish,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutting_down,
)
from kombu.exceptions import OperationalError as KombuOperationalError

from tracker import db, metrics
from tracker.db.clock import database_now
from tracker.db.leasing import Claim
from tracker.errors import BrokerUnavailable, DatabaseUnavailable, one_line
from tracker.ops.heartbeats import BEAT, HeartbeatRecorder
from tracker.settings import get_settings
from tracker.tasks import learning, polling, rate_limit, retention
from tracker.tasks.schedule import policies_by_provider
from tracker.upstream import PROVIDERS, Provider, make_provider
from tracker.webhooks import sender
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.guarded_http import guarded_session
from tracker.worker import metrics_server
from tracker.worker.lifetime import die_with_parent, start_shutdown_watchdog

__all__ = ["app", "enqueue_due_deliveries", "enqueue_due_tasks"]

log = logging.getLogger(__name__)

app = Celery("tracker")
app.config_from_object("celeryconfig")  # lazy: read on first use, not at import

_providers: dict[int, dict[str, Provider]] = {}
_webhook_sessions: dict[int, requests.Session] = {}
_buckets: dict[int, rate_limit.TokenBucket | None] = {}
_early_ages: dict[int, learning.LearnedEarlyAges] = {}


def _learned_early_ages() -> learning.LearnedEarlyAges | None:
    """This process's cached view of the adaptive schedule; None when TRACKER_POLL_SCHEDULE is
    fixed."""
    if get_settings().poll_schedule != "adaptive":
        return None
    return _early_ages.setdefault(os.getpid(), learning.LearnedEarlyAges())


def _rate_limit() -> Callable[[float], bool] | None:
    """This process's view of the API key's shared bucket; None when no cap is set."""
    pid = os.getpid()
    if pid not in _buckets:
        _buckets[pid] = rate_limit.make_bucket(get_settings(), db.session_scope)
    bucket = _buckets[pid]
    if bucket is None:
        return None
    return functools.partial(_take_token, bucket)


def _take_token(bucket: rate_limit.TokenBucket, wait_s: float) -> bool:
    return rate_limit.acquire(bucket, wait_s=wait_s)


def _provider_clients() -> dict[str, Provider]:
    """This process's upstream clients by provider name (one HTTP session each per process)."""
    clients = _providers.get(os.getpid())
    if clients is None:
        settings = get_settings()
        clients = _providers[os.getpid()] = {
            name: metrics.TimedProvider(make_provider(settings, name)) for name in PROVIDERS
        }
    return clients


def _webhook_session() -> requests.Session:
    """This process's HTTP session for webhooks: it connects only to allowed addresses."""
    http = _webhook_sessions.get(os.getpid())
    if http is None:
        policy = AddressPolicy.from_settings(get_settings())
        http = _webhook_sessions[os.getpid()] = guarded_session(policy)
    return http


_worker_pid: int | None = None  # the worker's main process, seen by what it forks


@worker_init.connect
def _remember_worker_pid(**_: Any) -> None:
    global _worker_pid
    _worker_pid = os.getpid()


@worker_process_init.connect
def _fresh_process_resources(**_: Any) -> None:
    # A pool child dies with the worker, even a SIGKILLed one (Celery asks too, since 5.3).
    die_with_parent(_worker_pid)
    metrics_server.close_inherited_server()
    # The prefork pool forks after the parent may have made an engine or an HTTP session.
    db.dispose_engine()
    _providers.clear()
    _webhook_sessions.clear()
    _buckets.clear()


@beat_embedded_init.connect
def _beat_dies_with_worker(**_: Any) -> None:
    # `worker --beat` forks beat as a process of its own, which Celery does not tie to the
    # worker: without this, a SIGKILLed worker leaves it ticking.
    die_with_parent(_worker_pid)
    metrics_server.close_inherited_server()


@worker_process_shutdown.connect
def _pool_child_leaves_its_metrics(**_: Any) -> None:
    metrics_server.forget_pool_process(os.getpid())


# --- heartbeats (tracker.ops.heartbeats): a row per process, written at most every few s ---

_recorders: dict[tuple[int, str], HeartbeatRecorder] = {}
_recorders_lock = threading.Lock()


def _worker_kind() -> tuple[str, str]:
    """(kind, queues) of this worker: what it consumes, from its --queues."""
    settings = get_settings()
    consumed = sorted((app.amqp.queues.consume_from or {}).keys())
    if consumed == [settings.poll_queue]:
        return "polls", settings.poll_queue
    if consumed == [settings.webhook_queue]:
        return "webhooks", settings.webhook_queue
    return "worker", ",".join(consumed) or f"{settings.poll_queue},{settings.webhook_queue}"


def _heartbeat(kind: str | None = None, *, keep_no_connection: bool = False) -> HeartbeatRecorder:
    """This process's recorder for `kind` (default: this worker's kind). A pool child writes
    the row of its worker's main process, so a worker is one row however many children.

    `keep_no_connection`: close the connection after each write. The worker's main process
    forks pool children (to replace one) at any time, and a child that inherits an open SQLite
    connection fails with "locking protocol".
    """
    with _recorders_lock:
        key = (os.getpid(), kind or "")
        recorder = _recorders.get(key)
        if recorder is None:
            queue = None
            if kind is None:
                kind, queue = _worker_kind()
            recorder = _recorders[key] = HeartbeatRecorder(
                kind=kind,
                queue=queue,
                every_s=get_settings().heartbeat_interval_s,
                session_scope=db.session_scope,
                pid=os.getpid() if kind == BEAT else (_worker_pid or os.getpid()),
                after_write=db.dispose_engine if keep_no_connection else None,
            )
        return recorder


_beat_ticked = threading.Event()
_beat_recorder_pid: int | None = None  # the process whose thread records beat's ticks
_beat_recorder_lock = threading.Lock()


@before_task_publish.connect
def _beat_records_its_tick(sender: str | None = None, **_: Any) -> None:
    # Only beat sends ticks: each one it sends is its heartbeat. A thread writes it (throttled
    # in the recorder), so a database slow to lock never delays a tick.
    global _beat_recorder_pid
    if sender != "tracker.tick":
        return
    with _beat_recorder_lock:
        if _beat_recorder_pid != os.getpid():
            _beat_recorder_pid = os.getpid()
            threading.Thread(target=_record_beat_ticks, name="beat-heartbeat", daemon=True).start()
    _beat_ticked.set()


def _record_beat_ticks() -> None:
    recorder = _heartbeat(BEAT)
    while True:
        _beat_ticked.wait()
        _beat_ticked.clear()
        recorder.beat()


@worker_ready.connect
def _start_worker_heartbeat(**_: Any) -> None:
    # A worker with nothing to do runs no task, yet it is alive: a thread says so.
    recorder = _heartbeat(keep_no_connection=True)
    recorder.beat(force=True)

    def keep_beating() -> None:
        while True:
            time.sleep(recorder.every_s)
            recorder.beat(force=True)

    threading.Thread(target=keep_beating, name="heartbeat", daemon=True).start()


@worker_shutting_down.connect
def _shutdown_watchdog(**_: Any) -> None:
    # A warm shutdown can hang for ever (billiard's pool finalizer waiting on a lock that a
    # killed pool child held); after the grace period the worker ends itself instead.
    start_shutdown_watchdog(get_settings().shutdown_grace_s)


def enqueue_due_tasks() -> int:
    """Claim due tasks and deliveries, send one message per batch; returns the tasks claimed."""
    settings = get_settings()
    claimed = _claim_and_send(
        functools.partial(
            polling.claim_due_tasks, in_flight_cap=polling.rate_limited_claims(settings)
        ),
        poll,
        lease_s=settings.poll_lease_s,
        batch_size=settings.poll_batch_size,
    )
    sending = enqueue_due_deliveries()
    if claimed or sending:
        log.info("tick: claimed %d due tasks and %d due deliveries", claimed, sending)
    return claimed


def enqueue_due_deliveries() -> int:
    """Claim due webhook deliveries, send one message per batch; returns how many."""
    settings = get_settings()
    return _claim_and_send(
        functools.partial(
            sender.claim_due_deliveries, endpoint_cap=settings.webhook_endpoint_concurrency
        ),
        deliver,
        lease_s=settings.webhook_lease_s,
        batch_size=settings.webhook_batch_size,
    )


def _claim_and_send(
    claim: Callable[..., list[Claim]], task: Any, *, lease_s: float, batch_size: int
) -> int:
    """Lease due rows with `claim` (on the database's clock), one `task` message per batch."""
    with db.session_scope() as session:
        claims = claim(
            session,
            now=database_now(session),
            limit=get_settings().claim_limit,
            lease_s=lease_s,
            batch_size=batch_size,
        )
    for batch in claims:
        # A message that outlives its lease is useless: the rows are due again by then.
        try:
            task.apply_async(args=[batch.to_message()], expires=batch.lease_expires_at)
        except (KombuOperationalError, OSError) as error:
            # The rows stay leased until the lease ends, then fall due again: nothing is lost.
            where = app.connection_for_write().as_uri()  # masks the password
            raise BrokerUnavailable(
                f"cannot send to the broker at {where}: {one_line(error)}"
            ) from None
    return sum(len(batch.row_ids) for batch in claims)


_T = TypeVar("_T")


class _Outage:
    """Logs a task that keeps failing because the database or the broker is down: one WARNING
    line per failed run naming the cause (those messages never hold secrets), the traceback at
    DEBUG, and one INFO line when a run works again. Raising instead would have Celery log
    tracebacks several times a second for as long as the outage lasts."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0
        self._lock = threading.Lock()

    def run(self, work: Callable[[], _T], *, fallback: _T) -> _T:
        try:
            result = work()
        except (DatabaseUnavailable, BrokerUnavailable) as error:
            with self._lock:
                self.failures += 1
            log.warning("%s failed: %s", self.what, error)
            log.debug("%s failed", self.what, exc_info=True)
            return fallback
        with self._lock:
            failures, self.failures = self.failures, 0
        if failures:
            log.info("%s works again (after %d failed runs)", self.what, failures)
        return result


_outages = {name: _Outage(name) for name in ("tick", "poll", "deliver", "prune", "learn")}


@app.task(name="tracker.tick", ignore_result=True)
def tick() -> int:
    return _outages["tick"].run(enqueue_due_tasks, fallback=0)


@app.task(name="tracker.prune", ignore_result=True)
def prune() -> int:
    """Beat sends this every hour; the database decides whether today's prune is due yet."""
    return _outages["prune"].run(_prune, fallback=0)


def _prune() -> int:
    report = retention.prune_if_due(
        db.session_scope, now=database_now, retention_days=get_settings().retention_days
    )
    return 0 if report is None else report.erased.tasks


@app.task(name="tracker.poll", ignore_result=True)
def poll(message: dict[str, Any]) -> dict[str, Any]:
    return _outages["poll"].run(lambda: _poll(message), fallback={})


@app.task(name="tracker.learn", ignore_result=True)
def learn() -> int:
    """Beat sends this every `learning.REFRESH_EVERY_S`: learn from the tasks completed since."""
    return _outages["learn"].run(_learn, fallback=0)


def _learn() -> int:
    settings = get_settings()
    if settings.poll_schedule != "adaptive":
        return 0
    with db.session_scope() as session:
        report = learning.refresh(
            session,
            now=database_now(session),
            policies=policies_by_provider(settings),
            lag_s=settings.poll_lease_s + learning.REFRESH_EVERY_S,
        )
    if report.learned:
        log.info(
            "adaptive schedule: learned %d completion ages in %d buckets",
            report.learned,
            report.buckets,
        )
    return report.learned


def _poll(message: dict[str, Any]) -> dict[str, Any]:
    settings = get_settings()
    summary = polling.poll_batch(
        Claim.from_message(message),
        provider=_provider_clients(),
        session_scope=db.session_scope,
        read_scope=db.read_scope,
        policy=policies_by_provider(settings),
        # A poll's whole attempt is bounded by this deadline (tracker.http_deadline), so a poll
        # started this long before the lease ends is over before it does.
        fetch_margin_s=settings.poll_attempt_deadline_s,
        concurrency=settings.poll_concurrency,
        rate_limit=_rate_limit(),
        early_ages=_learned_early_ages(),
    )
    metrics.record_polls(summary.outcomes)
    _heartbeat().beat(
        batch={
            "polled": summary.polled,
            "ended": summary.ended,
            "skipped": summary.skipped,
            "released": summary.released,
            "deferred": summary.deferred,
        }
    )
    if summary.ended:
        # The webhooks of what just ended are in the outbox, committed: send them now rather
        # than at the next tick. The claim's lease keeps the tick from sending them twice. The
        # polls are written: a broker or database outage here only delays the webhooks.
        _outages["deliver"].run(enqueue_due_deliveries, fallback=0)
    return {
        "polled": summary.polled,
        "skipped": summary.skipped,
        "ended": summary.ended,
        "released": summary.released,
        "deferred": summary.deferred,
        "outcomes": summary.outcomes,
    }


@app.task(name="tracker.deliver", ignore_result=True)
def deliver(message: dict[str, Any]) -> dict[str, int]:
    return _outages["deliver"].run(lambda: _deliver(message), fallback={})


def _deliver(message: dict[str, Any]) -> dict[str, int]:
    settings = get_settings()
    outcomes = sender.send_batch(
        Claim.from_message(message),
        session_scope=db.session_scope,
        http=_webhook_session(),
        timeout_s=settings.webhook_timeout_s,
        schedule_s=settings.webhook_retry_schedule_s,
        disable_after_s=settings.webhook_disable_after_s,
        concurrency=settings.webhook_concurrency,
    )
    metrics.record_deliveries(outcomes)
    _heartbeat().beat(batch=dict(outcomes))
    if outcomes:
        # This batch's endpoint has free room now (TRACKER_WEBHOOK_ENDPOINT_CONCURRENCY): claim
        # what is due rather than wait for the next tick, or an endpoint could get no more than
        # its cap per tick however fast it answers.
        enqueue_due_deliveries()
    return outcomes
