"""Prometheus metrics: what workers count as they go, and what the database knows.

Workers count polls by outcome, upstream latency and webhook attempts by outcome in
prometheus-client's multiprocess files under `TRACKER_DATA_DIR/metrics/<host>/<worker pid>/`: one
folder per host, so containers sharing a volume never write the same pid's file, and one per
worker, which it empties when it starts (as prometheus-client asks) and which its own `/metrics`
port serves (`tracker.worker.metrics_server`). The API's `/metrics` merges every such file it
can see and adds figures read from the database at scrape time: tasks by status, due tasks and
how late the oldest one is, transitions, deliveries by status.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracker.db.engine import make_private_folder
from tracker.db.models import (
    DeliveryAttempt,
    ProcessHeartbeat,
    ScheduledPoll,
    Transition,
    WebhookDelivery,
)
from tracker.settings import Settings
from tracker.states import DeliveryStatus, TaskStatus
from tracker.tasks import pauses, queries, retention
from tracker.upstream import PollResult, Provider

__all__ = [
    "DatabaseFigures",
    "TimedProvider",
    "enable_worker_metrics",
    "read_database_figures",
    "record_deliveries",
    "record_polls",
    "render",
]

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def worker_metrics_dir(settings: Settings, *, pid: int | None = None) -> Path:
    """The folder of the worker whose main process is `pid` (default: this process)."""
    host_folder = settings.data_dir.resolve() / "metrics" / socket.gethostname()
    return host_folder / str(pid or os.getpid())


def enable_worker_metrics(settings: Settings) -> Path:
    """Make this worker (and the pool children it forks) write metrics to a folder of its own,
    emptied first, and remove the folders of this host's workers that are gone; returns it.

    prometheus-client asks for the folder to be wiped between runs: a pid's file left by an
    earlier run (a restarted container has the same pids) would add to this run's counters.
    Must run before prometheus_client is first imported: it picks its storage at import.
    """
    folder = worker_metrics_dir(settings)
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    make_private_folder(folder)  # 0700, like every folder tracker makes
    for sibling in folder.parent.iterdir():
        if sibling.name.isdigit() and sibling != folder and not _alive(int(sibling.name)):
            shutil.rmtree(sibling, ignore_errors=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


class _WorkerMetrics:
    """Created on first use, so that `enable_worker_metrics` can come first."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.polls = Counter(
            "tracker_polls_total",
            "Polls of upstream, by what the answer was (a status, missing, or the problem).",
            ["outcome"],
        )
        self.latency = Histogram(
            "tracker_upstream_latency_seconds",
            "Time to get one answer from upstream.",
            ["provider"],
            buckets=LATENCY_BUCKETS_S,
        )
        self.deliveries = Counter(
            "tracker_webhook_sends_total",
            "Webhook sends by worker outcome (delivered, retry, dead, lease_lost, ...).",
            ["outcome"],
        )


_worker_metrics: _WorkerMetrics | None = None
_creating = threading.Lock()  # a batch's poll threads all reach for the metrics at once


def _metrics() -> _WorkerMetrics:
    global _worker_metrics
    if _worker_metrics is None:
        with _creating:
            if _worker_metrics is None:
                _worker_metrics = _WorkerMetrics()
    return _worker_metrics


def _never_fails(record: Callable[..., None]) -> Callable[..., None]:
    """Counting is not worth a lost poll: a metrics failure is logged, never raised."""

    @functools.wraps(record)
    def wrapper(*args: Any) -> None:
        try:
            record(*args)
        except Exception:
            log.warning("could not record a metric", exc_info=True)

    return wrapper


@_never_fails
def record_polls(outcomes: Mapping[str, int]) -> None:
    for outcome, count in outcomes.items():
        _metrics().polls.labels(outcome=outcome).inc(count)


@_never_fails
def record_deliveries(outcomes: Mapping[str, int]) -> None:
    for outcome, count in outcomes.items():
        _metrics().deliveries.labels(outcome=outcome).inc(count)


@_never_fails
def _record_latency(provider: str, seconds: float) -> None:
    _metrics().latency.labels(provider=provider).observe(seconds)


class TimedProvider:
    """A provider that records how long each upstream answer took."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name

    def fetch(self, task_id: str) -> PollResult:
        started = time.perf_counter()
        try:
            return self.inner.fetch(task_id)
        finally:
            _record_latency(self.name, time.perf_counter() - started)

    def close(self) -> None:
        self.inner.close()


# --- read at scrape time, by the API -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseFigures:
    """What the database says right now, shaped for Prometheus."""

    tasks_by_status: dict[str, int]
    due_tasks: int
    due_lag_s: float  # how long the most overdue task has waited for its poll
    transitions_by_status: dict[str, int]
    deliveries_by_status: dict[str, int]
    attempts_by_outcome: dict[str, int]
    paused_providers: dict[str, str] = field(default_factory=dict)  # provider: cause
    pruned_tasks: int = 0  # removed by retention and `tracker prune`, in all
    # Seconds since the most recently seen process of each kind (beat, polls...) was seen.
    heartbeat_age_s: dict[str, float] = field(default_factory=dict)


def read_database_figures(session: Session, *, now: datetime) -> DatabaseFigures:
    counts = queries.count_by_status(session)
    due_tasks, oldest = session.execute(
        select(func.count(), func.min(ScheduledPoll.due_at())).where(
            ScheduledPoll.next_poll_at <= now, ScheduledPoll.due_at() <= now
        )
    ).one()
    attempts = _grouped(session, DeliveryAttempt.succeeded)
    last_seen = session.execute(
        select(ProcessHeartbeat.kind, func.max(ProcessHeartbeat.last_seen_at)).group_by(
            ProcessHeartbeat.kind
        )
    ).all()
    return DatabaseFigures(
        tasks_by_status={status.value: counts.get(status, 0) for status in TaskStatus},
        due_tasks=due_tasks,
        due_lag_s=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        transitions_by_status=_grouped(session, Transition.to_status),
        deliveries_by_status=_grouped(session, WebhookDelivery.status),
        attempts_by_outcome={
            "succeeded": attempts.get(True, 0),
            "failed": attempts.get(False, 0),
        },
        paused_providers={
            pause.provider: pause.cause for pause in pauses.active_pauses(session, now=now)
        },
        pruned_tasks=retention.pruned_total(session),
        heartbeat_age_s={
            kind: max(0.0, (now - seen).total_seconds()) for kind, seen in last_seen if seen
        },
    )


def _grouped(session: Session, column: Any) -> dict[Any, int]:
    """Row counts by the values of `column`."""
    return dict(session.execute(select(column, func.count()).group_by(column)).all())


class _DatabaseCollector:
    def __init__(self, figures: DatabaseFigures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        figures = self.figures
        tasks = GaugeMetricFamily("tracker_tasks", "Tracked tasks by status.", labels=["status"])
        for status, count in figures.tasks_by_status.items():
            tasks.add_metric([status], count)
        yield tasks
        yield GaugeMetricFamily(
            "tracker_due_tasks", "Tasks whose next poll time has passed.", value=figures.due_tasks
        )
        yield GaugeMetricFamily(
            "tracker_due_lag_seconds",
            "How long the most overdue task has been waiting for its poll (0: none is due).",
            value=figures.due_lag_s,
        )
        transitions = CounterMetricFamily(
            "tracker_transitions", "Status changes recorded, by new status.", labels=["to_status"]
        )
        for status, count in sorted(figures.transitions_by_status.items()):
            transitions.add_metric([status], count)
        yield transitions
        deliveries = GaugeMetricFamily(
            "tracker_webhook_deliveries", "Webhook deliveries by status.", labels=["status"]
        )
        for status in DeliveryStatus:
            deliveries.add_metric([status.value], figures.deliveries_by_status.get(status, 0))
        yield deliveries
        attempts = CounterMetricFamily(
            "tracker_webhook_attempts", "Webhook delivery attempts by outcome.", labels=["outcome"]
        )
        for outcome, count in figures.attempts_by_outcome.items():
            attempts.add_metric([outcome], count)
        yield attempts
        paused = GaugeMetricFamily(
            "tracker_provider_paused",
            "1 while polling of a provider is paused; reason is the cause code (no_credits, "
            "rate_limited, unauthorized, unreachable).",
            labels=["provider", "reason"],
        )
        for provider, cause in sorted(figures.paused_providers.items()):
            paused.add_metric([provider, cause], 1)
        yield paused
        yield CounterMetricFamily(
            "tracker_pruned_tasks",
            "Ended tasks removed by retention (beat's daily prune) and `tracker prune`.",
            value=figures.pruned_tasks,
        )
        ages = GaugeMetricFamily(
            "tracker_heartbeat_age_seconds",
            "Seconds since the most recently seen process of each kind (beat, polls, webhooks, "
            "worker) recorded its heartbeat; no sample for a kind never seen.",
            labels=["kind"],
        )
        for kind, age_s in sorted(figures.heartbeat_age_s.items()):
            ages.add_metric([kind], age_s)
        yield ages


class _WorkerFilesCollector:
    """Every worker's multiprocess files under `root`, merged (prometheus-client's own merge):
    `<host>/<worker pid>/*.db`, and `<host>/*.db` as tracker wrote them before it had a folder
    per worker."""

    ATTEMPTS = 3  # a worker starting meanwhile may remove a gone worker's files

    def __init__(self, root: Path) -> None:
        self.root = root

    def collect(self) -> Iterator[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector

        for attempt in range(1, self.ATTEMPTS + 1):
            files = sorted(
                str(path) for pattern in ("*/*.db", "*/*/*.db") for path in self.root.glob(pattern)
            )
            try:
                merged = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
            except FileNotFoundError:
                if attempt == self.ATTEMPTS:
                    raise
                continue
            yield from merged
            return


def render(figures: DatabaseFigures, settings: Settings) -> tuple[bytes, str]:
    """The Prometheus text exposition and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_DatabaseCollector(figures))
    registry.register(_WorkerFilesCollector(settings.data_dir.resolve() / "metrics"))
    return generate_latest(registry), CONTENT_TYPE_LATEST
