"""Poll throughput (scenario 1) and worker memory (scenario 6), measured side by side.

N tasks stay `processing` forever in the simulator (its own process). Three subjects poll them,
one after the other, each for the same steady-state window, counted as the simulator sees them
(its `/_sim/stats` query counter, read at the window's start and end):

- a plain loop: the same HTTP calls (URL, body, headers) from threads in one process, one
  kept-alive `requests.Session` per thread, as many threads as tracker polls at once: the
  ceiling of this machine's client. It runs first and again last; the ceiling is their mean;
- the self-rescheduling Celery task per ID (`bench/baseline_celery.py`), one worker process with
  the same number of threads, on the same Redis;
- tracker: one `tracker worker -c 1` (one pool process) and one `tracker beat` on Redis and a
  fresh PostgreSQL database, with a schedule short enough that every task is always due.

Each window starts after a warm-up that begins with the subject's first query. The worker's
resident memory (its main process and pool child) is read when polling starts, after the warm-up
and at the end of tracker's window.

    python -m bench.throughput [--throughput-tasks 10000] [--throughput-window-s 30] ...
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select

from bench import baseline_celery
from bench.result import Row, ScenarioResult
from bench.stack import (
    API_KEY,
    REDIS_URL,
    SimulatorProcess,
    TrackerProcesses,
    bench_database,
    delete_queue,
    tree_rss_bytes,
    wait_until,
)
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import TrackedTask
from tracker.states import TaskStatus
from tracker.tasks import register

__all__ = ["QUICK", "SCENARIO", "add_arguments", "run"]

SCENARIO = "poll throughput and worker memory"
PLAIN = "plain requests loop"
SELF_RETRYING = "self-retrying Celery task"
TRACKER = "tracker"
PLAIN_TARGET_RATIO = 0.8  # issue 15; 0.6 before it
CELERY_TARGET_RATIO = 5.0
RSS_GROWTH_TARGET = 0.10
MIB = 1024 * 1024
LOGLEVEL = "WARNING"  # of the tracker processes (INFO logs every tick and batch)

QUICK: dict[str, Any] = {
    "throughput_tasks": 400,
    "throughput_warmup_s": 0.5,
    "throughput_window_s": 1.5,
    "throughput_plain_runs": 1,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("poll throughput and worker memory")
    group.add_argument("--throughput-tasks", type=int, default=10_000, help="active tasks")
    group.add_argument(
        "--throughput-concurrency",
        type=int,
        default=8,
        help="simultaneous requests: TRACKER_POLL_CONCURRENCY, loop and Celery threads",
    )
    group.add_argument("--throughput-batch-size", type=int, default=50, help="tasks per message")
    group.add_argument("--throughput-warmup-s", type=float, default=10.0)
    group.add_argument("--throughput-window-s", type=float, default=30.0)
    group.add_argument(
        "--throughput-plain-runs",
        type=int,
        choices=(1, 2),
        default=2,
        help="run the plain loop first only (1) or first and last (2)",
    )
    group.add_argument("--throughput-database", choices=("postgres", "sqlite"), default="postgres")


@dataclass(frozen=True, slots=True)
class Window:
    """Queries the simulator answered during one steady-state window."""

    queries: int
    seconds: float
    simulator_cpu_s: float

    @property
    def per_second(self) -> float:
        return self.queries / self.seconds

    @property
    def simulator_cpu_share(self) -> float:
        return self.simulator_cpu_s / self.seconds


def measure(sim: SimulatorProcess, *, warmup_s: float, window_s: float) -> Window:
    """Wait out the warm-up, then count the queries answered during `window_s`."""
    time.sleep(warmup_s)
    queries, cpu, started = sim.queries(), sim.cpu_seconds(), time.monotonic()
    time.sleep(window_s)
    queries_end, cpu_end, ended = sim.queries(), sim.cpu_seconds(), time.monotonic()
    return Window(queries_end - queries, ended - started, cpu_end - cpu)


def wait_for_first_query(sim: SimulatorProcess, before: int, check: Callable[[], None]) -> None:
    def started() -> bool:
        check()
        return sim.queries() > before

    wait_until(started, timeout_s=60, what="the first poll")


def task_ids(count: int) -> list[str]:
    return [f"bench-tp-{index:06d}" for index in range(count)]


def processing_forever(ids: Sequence[str]) -> list[dict[str, Any]]:
    return [{"taskid": task_id, "script": [{"status": 2}]} for task_id in ids]


# -- (a) the plain loop ------------------------------------------------------------------------


def plain_loop(sim: SimulatorProcess, ids: Sequence[str], args: argparse.Namespace) -> Window:
    """The same calls tracker makes, from `concurrency` threads with one session each."""
    stop = threading.Event()
    order = itertools.count()
    url = sim.base_url + baseline_celery.STATUS_PATH

    def work() -> None:
        with requests.Session() as session:
            session.headers.update(_client_headers())
            while not stop.is_set():
                task_id = ids[next(order) % len(ids)]
                body = json.dumps({"taskid": task_id, "moreTaskInfo": True})
                response = session.post(url, data=body, timeout=(5, 30), allow_redirects=False)
                _ = response.text

    threads = [threading.Thread(target=work) for _ in range(args.throughput_concurrency)]
    for thread in threads:
        thread.start()
    try:
        return measure(sim, warmup_s=args.throughput_warmup_s, window_s=args.throughput_window_s)
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def _client_headers() -> dict[str, str]:
    """What `tracker.upstream.tensorslab.TensorsLabClient` sends with every poll."""
    return {
        "Authorization": f"Bearer {API_KEY}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": "tracker/0.1 (self-hosted task tracker)",
    }


# -- (b) the self-retrying Celery task ---------------------------------------------------------


def self_retrying(
    sim: SimulatorProcess, ids: Sequence[str], args: argparse.Namespace, folder: Path
) -> Window:
    """One Celery message per ID, each re-sending itself after polling once."""
    queue = f"bench-selfretry-{uuid.uuid4().hex[:8]}"
    celery = baseline_celery.make_app(REDIS_URL, queue)
    baseline_celery.seed(celery, ids, queue)
    env = {
        "BENCH_SELFRETRY_BROKER": REDIS_URL,
        "BENCH_SELFRETRY_QUEUE": queue,
        "BENCH_SELFRETRY_BASE_URL": sim.base_url,
        "BENCH_SELFRETRY_API_KEY": API_KEY,
        "BENCH_SELFRETRY_COUNTDOWN_S": "0",
    }
    command = [
        *(sys.executable, "-m", "celery", "-A", "bench.baseline_celery", "worker"),
        *("--pool", "threads", "--concurrency", str(args.throughput_concurrency)),
        *("--queues", queue, "--loglevel", "WARNING"),
    ]
    before = sim.queries()
    with TrackerProcesses(env, folder) as group:
        group.start_command("selfretry", command, cwd=Path(__file__).resolve().parent.parent)
        try:
            wait_for_first_query(sim, before, group.check_alive)
            return measure(
                sim, warmup_s=args.throughput_warmup_s, window_s=args.throughput_window_s
            )
        finally:
            group.stop_all()
            delete_queue(REDIS_URL, queue)
            celery.close()


# -- tracker -----------------------------------------------------------------------------------


def tracker_settings(args: argparse.Namespace) -> dict[str, str]:
    """Settings that make tracker poll as fast as it can: every task is always due."""
    return {
        "TRACKER_POLL_FIRST_DELAY_S": "1",
        "TRACKER_POLL_MIN_INTERVAL_S": "1",
        "TRACKER_POLL_MAX_INTERVAL_S": "1",
        "TRACKER_POLL_QUIET_UNTIL_S": "0",
        "TRACKER_POLL_BATCH_SIZE": str(args.throughput_batch_size),
        "TRACKER_POLL_CONCURRENCY": str(args.throughput_concurrency),
        "TRACKER_CLAIM_LIMIT": "2000",
        "TRACKER_TICK_INTERVAL_S": "1",
        "TRACKER_POLL_LEASE_S": "120",
    }


@dataclass(frozen=True, slots=True)
class TrackerRun:
    window: Window
    rss_start: int
    rss_warm: int
    rss_end: int
    polls_in_db: int


def run_tracker(
    sim: SimulatorProcess, ids: Sequence[str], args: argparse.Namespace, folder: Path
) -> TrackerRun:
    settings = tracker_settings(args)
    queue = f"bench-tp-{uuid.uuid4().hex[:8]}"
    with bench_database(args.throughput_database, "bench_throughput") as url:
        with db.session_scope(url) as session:
            register.register(session, list(ids), now=utc_now(), first_poll_delay_s=1)
        env = {
            **settings,
            "TRACKER_DATA_DIR": str(folder / "data"),
            "TRACKER_QUEUE": queue,
            "TRACKER_DATABASE_URL": url,
            "TRACKER_BROKER_URL": REDIS_URL,
            "TENSORSLAB_BASE_URL": sim.base_url,
            "TENSORSLAB_API_KEY": API_KEY,
        }
        before = sim.queries()
        with TrackerProcesses(env, folder) as group:
            worker = group.start("worker", "worker", "--concurrency", "1", "-l", LOGLEVEL)
            group.start("beat", "beat", "-l", LOGLEVEL)
            try:
                wait_for_first_query(sim, before, group.check_alive)
                rss_start = tree_rss_bytes(worker.pid)
                # Every task's first poll is a transition (registered -> processing); the
                # steady state starts once all of them are behind.
                wait_until(
                    lambda: _never_polled(url) == 0,
                    timeout_s=600,
                    every_s=1.0,
                    what="every task's first poll",
                )
                time.sleep(args.throughput_warmup_s)
                rss_warm = tree_rss_bytes(worker.pid)
                polls_before = _polls_in_db(url)
                window = measure(sim, warmup_s=0.0, window_s=args.throughput_window_s)
                polls_in_db = _polls_in_db(url) - polls_before
                rss_end = tree_rss_bytes(worker.pid)
                group.check_alive()
            finally:
                group.stop_all()
                delete_queue(REDIS_URL, queue)
    return TrackerRun(window, rss_start, rss_warm, rss_end, polls_in_db)


def _never_polled(url: str) -> int:
    with db.session_scope(url) as session:
        count = select(func.count()).where(TrackedTask.status == TaskStatus.REGISTERED.value)
        return int(session.scalar(count) or 0)


def _polls_in_db(url: str) -> int:
    with db.session_scope(url) as session:
        return int(session.scalar(select(func.sum(TrackedTask.poll_count))) or 0)


# -- the scenario ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> ScenarioResult:
    ids = task_ids(args.throughput_tasks)
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp, SimulatorProcess() as sim:
        folder = Path(tmp)
        sim.add_tasks(processing_forever(ids))
        plain = [plain_loop(sim, ids, args)]
        celery = self_retrying(sim, ids, args, folder)
        tracked = run_tracker(sim, ids, args, folder)
        if args.throughput_plain_runs == 2:
            plain.append(plain_loop(sim, ids, args))
    return ScenarioResult(
        scenario=SCENARIO,
        rows=_rows(plain, celery, tracked),
        parameters=_parameters(args),
        notes=_notes(plain, celery, tracked),
    )


def _rows(plain: list[Window], celery: Window, tracked: TrackerRun) -> tuple[Row, ...]:
    ceiling = statistics.fmean(window.per_second for window in plain)
    tracker_rate = tracked.window.per_second
    to_plain = tracker_rate / ceiling
    to_celery = tracker_rate / celery.per_second
    growth = tracked.rss_end / tracked.rss_start - 1
    return (
        Row(
            subject=PLAIN,
            metric="polls/s",
            value=ceiling,
            note=" / ".join(f"{window.per_second:.0f}" for window in plain) + " (first / last)"
            if len(plain) > 1
            else "",
        ),
        Row(subject=SELF_RETRYING, metric="polls/s", value=celery.per_second),
        Row(
            subject=TRACKER,
            metric="polls/s",
            value=tracker_rate,
            ratio=to_plain,
            baseline=PLAIN,
            target=f">= {PLAIN_TARGET_RATIO:g}x plain loop",
            met=to_plain >= PLAIN_TARGET_RATIO,
        ),
        Row(
            subject=TRACKER,
            metric="polls/s",
            value=tracker_rate,
            ratio=to_celery,
            baseline=SELF_RETRYING,
            target=f">= {CELERY_TARGET_RATIO:g}x self-retrying Celery",
            met=to_celery >= CELERY_TARGET_RATIO,
        ),
        Row(subject="tracker worker", metric="RSS at start (MiB)", value=tracked.rss_start / MIB),
        Row(
            subject="tracker worker",
            metric="RSS after warm-up (MiB)",
            value=tracked.rss_warm / MIB,
        ),
        Row(subject="tracker worker", metric="RSS after run (MiB)", value=tracked.rss_end / MIB),
        Row(
            subject="tracker worker",
            metric="RSS growth (%)",
            value=growth * 100,
            target=f"<= {RSS_GROWTH_TARGET:.0%}",
            met=growth <= RSS_GROWTH_TARGET,
            note="after run vs start (worker and its pool child)",
        ),
    )


def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "tasks": args.throughput_tasks,
        "concurrency": args.throughput_concurrency,
        "warmup_s": args.throughput_warmup_s,
        "window_s": args.throughput_window_s,
        "database": args.throughput_database,
        "broker": REDIS_URL,
        "tracker_processes": "tracker worker --concurrency 1, tracker beat",
        "tracker_settings": tracker_settings(args),
        "celery_baseline": (
            f"celery worker --pool threads --concurrency {args.throughput_concurrency}, "
            "countdown 0, prefetch multiplier 4 (Celery's default)"
        ),
    }


def _notes(plain: list[Window], celery: Window, tracked: TrackerRun) -> tuple[str, ...]:
    shares = ", ".join(
        f"{name} {window.simulator_cpu_share:.0%}"
        for name, window in (
            *((PLAIN, window) for window in plain),
            (SELF_RETRYING, celery),
            (TRACKER, tracked.window),
        )
    )
    ceiling = statistics.fmean(window.per_second for window in plain)
    return (
        "Polls are counted by the simulator (queries answered) over each window; the window "
        "starts after a warm-up that begins with the subject's first query (for tracker, once "
        "every task has had its first poll, which is a transition, so the window is steady).",
        "Self-retrying Celery: a py-spy profile of its worker shows the HTTP call holding about "
        "a quarter of the GIL time and Celery's per-message work (publishing the next message "
        "to Redis, consuming, acknowledging, tracing) the rest: one broker round trip per poll. "
        "tracker sends one message per batch of TRACKER_POLL_BATCH_SIZE polls. The >= 5x target "
        f"is out of reach here by construction: even the plain loop is only "
        f"{ceiling / celery.per_second:.1f}x the Celery baseline on this machine.",
        "tracker: each batch asks upstream (threads, the GIL shared with the loop's own work), "
        "then writes (one locked SELECT and one executemany UPDATE, pipelined by psycopg); "
        "the two phases do not overlap inside one pool process. Before the executemany the "
        "per-row UPDATE built by the ORM took more GIL time than the HTTP calls (py-spy).",
        f"The simulator's own CPU use during each window (of one core): {shares}; it is not the "
        "bottleneck, the client is (a requests.Session poll costs about 1 ms of CPU).",
        f"tracker's database counted {tracked.polls_in_db} polls written during its window "
        f"(the simulator {tracked.window.queries}).",
    )


if __name__ == "__main__":
    from bench.__main__ import run_alone

    run_alone("throughput")
