"""Detection delay (scenario 2): from the moment a video is done to the moment its webhook lands.

N tasks in the simulator (its own process) are `processing` until a finishing time drawn evenly
from a window (120 to 270 s after they were created, by default: like real videos, which take
2 minutes or more, every task finishes after tracker's quiet period, where its schedule polls at
its longest interval), then `completed`. tracker (`tracker worker`
with its default concurrency and `tracker beat`, on Redis and a fresh PostgreSQL database) polls
them with its default schedule and sends a signed `task.completed` webhook for each to a real
receiver on loopback (`tracker.testing.receiver.WebhookReceiver`, which verifies signatures).

A task's delay is the webhook's arrival time minus the instant the simulator marked it completed.
That instant is exact: a timed step ends at its start plus its `after_s`, so it is the task's
`created_at` (read from the simulator's admin API) plus its processing time; a sample of tasks
is checked against the simulator's own `finished_at`.

    python -m bench.detection [--detection-tasks 10000] [--detection-finish-to-s 270] ...
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.result import Row, ScenarioResult
from bench.stack import (
    API_KEY,
    REDIS_URL,
    SimulatorProcess,
    TrackerProcesses,
    bench_database,
    delete_queue,
)
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import TrackedTask, Transition
from tracker.settings import get_settings
from tracker.states import TaskStatus
from tracker.tasks import register
from tracker.tasks.schedule import PollPolicy
from tracker.testing.receiver import ReceivedWebhook, WebhookReceiver
from tracker.webhooks import endpoints
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.vault import key_file

__all__ = ["QUICK", "SCENARIO", "add_arguments", "run"]

SCENARIO = "detection delay"
SUBJECT = "tracker (poll + webhook)"
TARGET_SLACK_S = 2.0
SAMPLE_CHECKED = 50  # tasks whose computed finishing instant is checked against the simulator
LOGLEVEL = "WARNING"  # of the tracker processes

QUICK: dict[str, Any] = {
    "detection_tasks": 200,
    "detection_finish_from_s": 4.0,
    "detection_finish_to_s": 7.0,
    "detection_schedule": "quick",
}

# The schedule settings of each choice; "default" leaves tracker's defaults alone.
SCHEDULES: dict[str, dict[str, str]] = {
    "default": {},
    "quick": {
        "TRACKER_TICK_INTERVAL_S": "0.2",
        "TRACKER_POLL_FIRST_DELAY_S": "0.5",
        "TRACKER_POLL_MIN_INTERVAL_S": "0.5",
        "TRACKER_POLL_MAX_INTERVAL_S": "1",
        "TRACKER_POLL_QUIET_UNTIL_S": "0",
        # A batch that fails gets polled again when its lease ends: make that quick too.
        "TENSORSLAB_CONNECT_TIMEOUT_S": "1",
        "TENSORSLAB_READ_TIMEOUT_S": "2",
        "TRACKER_POLL_LEASE_S": "6",
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("detection delay")
    group.add_argument("--detection-tasks", type=int, default=10_000, help="tasks to finish")
    group.add_argument(
        "--detection-finish-from-s",
        type=float,
        default=120.0,
        help="earliest finishing time, seconds after the task was created",
    )
    group.add_argument("--detection-finish-to-s", type=float, default=270.0, help="latest")
    group.add_argument(
        "--detection-schedule",
        choices=sorted(SCHEDULES),
        default="default",
        help="tracker's default schedule, or a fast one for quick runs",
    )
    group.add_argument(
        "--detection-worker-concurrency",
        type=int,
        default=2,
        help="tracker worker --concurrency (2 is the command's default)",
    )
    group.add_argument("--detection-database", choices=("postgres", "sqlite"), default="postgres")
    group.add_argument("--detection-seed", type=int, default=1)


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


@dataclass(frozen=True, slots=True)
class Delays:
    """Seconds from completion to webhook (sorted), one per task that got its webhook, and its
    two parts: completion to the poll that saw it, and that poll to the webhook's arrival."""

    seconds: list[float]
    to_poll: list[float]
    poll_to_webhook: list[float]
    expected: int
    duplicates: int
    unverified: int
    polls: int

    def percentile(self, p: int) -> float:
        return percentile(self.seconds, p)


def finishing_times(args: argparse.Namespace) -> dict[str, float]:
    """Each task's processing time, drawn evenly from the window."""
    rng = random.Random(args.detection_seed)
    low, high = args.detection_finish_from_s, args.detection_finish_to_s
    return {f"bench-det-{i:06d}": rng.uniform(low, high) for i in range(args.detection_tasks)}


def scripts(durations: dict[str, float]) -> list[dict[str, Any]]:
    return [
        {"taskid": task_id, "script": [{"status": 2, "after_s": seconds}, {"status": 3}]}
        for task_id, seconds in durations.items()
    ]


def _secret_key() -> str:
    settings = get_settings()
    if settings.secret_keys:
        return ",".join(settings.secret_keys)
    return key_file(settings).read_text(encoding="ascii").strip()


def tracker_environment(args: argparse.Namespace) -> dict[str, str]:
    """The settings tracker runs with (besides where things are)."""
    return {
        **SCHEDULES[args.detection_schedule],
        "TRACKER_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",  # the receiver is on loopback
    }


def max_interval_s(args: argparse.Namespace) -> float:
    configured = SCHEDULES[args.detection_schedule].get("TRACKER_POLL_MAX_INTERVAL_S")
    return float(configured) if configured else PollPolicy().max_interval_s


def completion_instants(sim: SimulatorProcess, durations: dict[str, float]) -> dict[str, float]:
    """When the simulator marked each task completed (time.time(), as the receiver records)."""
    instants = {}
    created_at = 0.0
    for index, (task_id, seconds) in enumerate(durations.items()):
        if index % SimulatorProcess.CHUNK == 0:  # the tasks of one admin call share created_at
            created_at = float(sim.task_state(task_id)["created_at"])
        instants[task_id] = created_at + seconds
    return instants


def check_sample(sim: SimulatorProcess, instants: dict[str, float], rng: random.Random) -> float:
    """The largest gap between a computed instant and the simulator's `finished_at`, sampled."""
    sample = rng.sample(sorted(instants), min(SAMPLE_CHECKED, len(instants)))
    worst = 0.0
    for task_id in sample:
        finished_at = sim.task_state(task_id)["finished_at"]
        if finished_at is None:
            raise RuntimeError(f"{task_id} is not finished in the simulator")
        worst = max(worst, abs(float(finished_at) - instants[task_id]))
    return worst


@dataclass(frozen=True, slots=True)
class TrackerRun:
    received: list[ReceivedWebhook]
    detected_at: dict[str, float]  # when tracker's poll saw each task completed (time.time())
    worker_errors: list[str]  # distinct errors the worker log shows for failed Celery tasks


def run_tracker(
    sim: SimulatorProcess,
    receiver: WebhookReceiver,
    durations: dict[str, float],
    args: argparse.Namespace,
    folder: Path,
) -> TrackerRun:
    queue = f"bench-det-{uuid.uuid4().hex[:8]}"
    with bench_database(args.detection_database, "bench_detection") as url:
        settings = tracker_environment(args)
        first_delay_s = float(
            settings.get("TRACKER_POLL_FIRST_DELAY_S", PollPolicy().first_delay_s)
        )
        with db.session_scope(url) as session:
            created = endpoints.add_endpoint(
                session,
                receiver.url + "/hooks/bench",
                events=["task.completed"],
                now=utc_now(),
                policy=AddressPolicy.from_setting("127.0.0.0/8"),
            )
            register.register(
                session, list(durations), now=utc_now(), first_poll_delay_s=first_delay_s
            )
        assert created.secret is not None
        receiver.set_secrets([created.secret])
        env = {
            **settings,
            "TRACKER_DATA_DIR": str(folder / "data"),
            # The key this process encrypted the endpoint's secret with: the worker signs.
            "TRACKER_SECRET_KEY": _secret_key(),
            "TRACKER_QUEUE": queue,
            "TRACKER_DATABASE_URL": url,
            "TRACKER_BROKER_URL": REDIS_URL,
            "TENSORSLAB_BASE_URL": sim.base_url,
            "TENSORSLAB_API_KEY": API_KEY,
        }
        concurrency = str(args.detection_worker_concurrency)
        with TrackerProcesses(env, folder) as group:
            group.start("worker", "worker", "--concurrency", concurrency, "-l", LOGLEVEL)
            group.start("beat", "beat", "-l", LOGLEVEL)
            try:
                received = _wait_for_webhooks(receiver, group, len(durations), args)
            finally:
                group.stop_all()
                delete_queue(REDIS_URL, queue)
        return TrackerRun(received, _detected_at(url), _worker_errors(folder / "worker.log"))


def _detected_at(url: str) -> dict[str, float]:
    """The moment of the poll answer that recorded each task's move to completed."""
    with db.session_scope(url) as session:
        rows = session.execute(
            select(TrackedTask.task_id, Transition.occurred_at)
            .join(Transition, Transition.task_pk == TrackedTask.id)
            .where(Transition.to_status == TaskStatus.COMPLETED.value)
        ).all()
    return {row.task_id: row.occurred_at.timestamp() for row in rows}


def _worker_errors(log: Path) -> list[str]:
    errors: dict[str, None] = {}
    for line in log.read_text(errors="replace").splitlines():
        if "raised unexpected" in line:
            errors.setdefault(line.split("raised unexpected:", 1)[-1].strip()[:200], None)
    return list(errors)


def _wait_for_webhooks(
    receiver: WebhookReceiver, group: TrackerProcesses, count: int, args: argparse.Namespace
) -> list[ReceivedWebhook]:
    """Every task's webhook, or what arrived by a generous deadline."""
    lease_s = float(tracker_environment(args).get("TRACKER_POLL_LEASE_S", 120))
    deadline = time.monotonic() + args.detection_finish_to_s + 10 * max_interval_s(args) + lease_s
    while time.monotonic() < deadline:
        group.check_alive()
        try:
            return receiver.wait_for(count, timeout_s=2.0)
        except TimeoutError:
            continue
    return receiver.received


def delays(run: TrackerRun, instants: dict[str, float], polls: int) -> Delays:
    first_arrival: dict[str, float] = {}
    duplicates = unverified = 0
    for item in run.received:
        if not item.verified:
            unverified += 1
            continue
        task_id = item.payload["data"]["task_id"]
        if task_id in first_arrival:
            duplicates += 1
            continue
        first_arrival[task_id] = item.received_at
    seconds = [arrived - instants[task_id] for task_id, arrived in first_arrival.items()]
    detected = [task_id for task_id in first_arrival if task_id in run.detected_at]
    return Delays(
        seconds=sorted(seconds),
        to_poll=sorted(run.detected_at[task_id] - instants[task_id] for task_id in detected),
        poll_to_webhook=sorted(
            first_arrival[task_id] - run.detected_at[task_id] for task_id in detected
        ),
        expected=len(instants),
        duplicates=duplicates,
        unverified=unverified,
        polls=polls,
    )


def run(args: argparse.Namespace) -> ScenarioResult:
    durations = finishing_times(args)
    with (
        tempfile.TemporaryDirectory(prefix="bench-detection-") as tmp,
        SimulatorProcess() as sim,
        WebhookReceiver() as receiver,
    ):
        sim.add_tasks(scripts(durations))
        instants = completion_instants(sim, durations)
        tracked = run_tracker(sim, receiver, durations, args, Path(tmp))
        worst_gap = check_sample(sim, instants, random.Random(args.detection_seed))
        measured = delays(tracked, instants, sim.queries())
    return ScenarioResult(
        scenario=SCENARIO,
        rows=_rows(measured, max_interval_s(args)),
        parameters=_parameters(args),
        notes=_notes(measured, worst_gap, max_interval_s(args), tracked.worker_errors),
    )


def _rows(measured: Delays, interval_s: float) -> tuple[Row, ...]:
    if not measured.seconds:
        raise RuntimeError("no webhook arrived: nothing to measure")
    target_s = interval_s + TARGET_SLACK_S
    p99 = measured.percentile(99)
    return (
        Row(subject=SUBJECT, metric="delay p50 (s)", value=measured.percentile(50)),
        Row(subject=SUBJECT, metric="delay p95 (s)", value=measured.percentile(95)),
        Row(
            subject=SUBJECT,
            metric="delay p99 (s)",
            value=p99,
            target=f"<= max poll interval + {TARGET_SLACK_S:g} s ({target_s:g} s)",
            met=p99 <= target_s,
        ),
        Row(subject=SUBJECT, metric="delay max (s)", value=measured.seconds[-1]),
        Row(
            subject=SUBJECT,
            metric="completion to poll p99 (s)",
            value=percentile(measured.to_poll, 99),
            note="the schedule's share: from completed to the poll answer that saw it",
        ),
        Row(
            subject=SUBJECT,
            metric="poll to webhook p50 (s)",
            value=percentile(measured.poll_to_webhook, 50),
            note="the outbox's share: from that poll answer to the webhook's arrival",
        ),
        Row(
            subject=SUBJECT,
            metric="poll to webhook p99 (s)",
            value=percentile(measured.poll_to_webhook, 99),
        ),
        Row(
            subject=SUBJECT,
            metric="webhooks received",
            value=float(len(measured.seconds)),
            note=f"of {measured.expected}; {measured.duplicates} duplicates, "
            f"{measured.unverified} unverified",
        ),
        Row(
            subject=SUBJECT,
            metric="polls per task",
            value=measured.polls / measured.expected,
        ),
    )


def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "tasks": args.detection_tasks,
        "finishing_window_s": [args.detection_finish_from_s, args.detection_finish_to_s],
        "schedule": args.detection_schedule,
        "max_poll_interval_s": max_interval_s(args),
        "tracker_settings": tracker_environment(args) or "defaults",
        "tracker_processes": (
            f"tracker worker --concurrency {args.detection_worker_concurrency}, tracker beat"
        ),
        "database": args.detection_database,
        "broker": REDIS_URL,
        "seed": args.detection_seed,
    }


def _notes(
    measured: Delays, worst_gap_s: float, interval_s: float, worker_errors: list[str]
) -> tuple[str, ...]:
    missing = measured.expected - len(measured.seconds)
    notes = [
        "Delay = the webhook's arrival at the receiver minus the instant the simulator marked "
        "the task completed (created_at + processing time; checked against the simulator's "
        f"finished_at on {SAMPLE_CHECKED} tasks, largest gap {worst_gap_s * 1000:.3f} ms).",
        f"Where the time goes. Completion to poll (p99 {percentile(measured.to_poll, 99):.1f} s):"
        f" the schedule waits at most the max interval ({interval_s:g} s; jitter only shortens "
        "it), then a due task waits for the next tick (up to TRACKER_TICK_INTERVAL_S), the "
        "broker queue and its batch. Poll to webhook (p50 "
        f"{percentile(measured.poll_to_webhook, 50):.2f} s, p99 "
        f"{percentile(measured.poll_to_webhook, 99):.2f} s): the poll task whose batch ended "
        "tasks claims their deliveries from the outbox right after its commit and sends them "
        "(its message goes before queued poll batches), then the POST.",
        "So besides the schedule, one tick wait (up to TRACKER_TICK_INTERVAL_S) and the broker "
        "queue sit between a completion and its webhook.",
    ]
    if missing:
        notes.append(f"{missing} webhooks did not arrive before the deadline.")
    late = sum(1 for value in measured.seconds if value > 2 * interval_s + TARGET_SLACK_S)
    if late:
        notes.append(
            f"{late} tasks took more than twice the max interval: a poll batch that fails is "
            "polled again only when its lease (TRACKER_POLL_LEASE_S) ends."
        )
    if worker_errors:
        notes.append("Failed Celery tasks in the worker log: " + "; ".join(worker_errors))
    return tuple(notes)


if __name__ == "__main__":
    from bench.__main__ import run_alone

    run_alone("detection")
