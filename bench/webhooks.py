"""Webhook delivery throughput: tracker's delivery path against a plain loop of the same POSTs.

Both send the same signed bodies to the same local receiver, a separate process (standard
library HTTP server, HTTP/1.1 keep-alive, Nagle off, one write per answer, 200 to everything).

- tracker: `--webhooks-deliveries` pending rows in the outbox of a scratch PostgreSQL database,
  sent the way users run it: a real `tracker worker -c N` process (Celery prefork, Redis broker,
  its own queue) executes `tracker.deliver`, i.e. `tracker.webhooks.sender.send_batch` (load,
  sign, POST through the SSRF-guarded session, record each attempt, update the endpoint). The
  ticks are beat's: every `TRACKER_TICK_INTERVAL_S` this process runs `claim_due_deliveries`
  with the default claim limit, lease and batch size and sends one `tracker.deliver` message per
  batch, as `enqueue_due_tasks` does (the first tick at the start of the clock). The clock stops
  when the database shows every delivery `delivered`.
- plain loop: the bodies read from the same rows, signed with `standardwebhooks` (same
  headers), POSTed by a thread pool of the same total concurrency (worker processes x
  TRACKER_WEBHOOK_CONCURRENCY), one kept-alive `requests.Session` per thread; no database.

Rounds alternate plain, tracker, plain, tracker, ...; each reports its median round.

    python -m bench.webhooks [--webhooks-deliveries 5000] [--webhooks-rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from celery import Celery
from sqlalchemy import insert, select, text, update
from standardwebhooks import Webhook

from bench.result import Row, ScenarioResult
from bench.stack import REDIS_URL, bench_database, delete_queue
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import TrackedTask, WebhookDelivery, WebhookEndpoint
from tracker.settings import Settings
from tracker.states import TaskStatus
from tracker.webhooks.events import payload_body
from tracker.webhooks.outbox import new_message_id
from tracker.webhooks.sender import USER_AGENT, claim_due_deliveries
from tracker.webhooks.signing import generate_secret, verify_signature

__all__ = ["QUICK", "SCENARIO", "add_arguments", "run"]

SCENARIO = "webhook delivery throughput"
TARGET_RATIO = 0.8  # issue 15 ("kept >= 0.8x its plain loop"); 0.6 before it
SAMPLES = 5  # requests per round the receiver keeps, to verify their signatures afterwards
QUICK: dict[str, Any] = {"webhooks_deliveries": 300, "webhooks_rounds": 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("webhooks (scenario 4)")
    group.add_argument(
        "--webhooks-deliveries", type=int, default=5_000, help="deliveries per round"
    )
    group.add_argument("--webhooks-rounds", type=int, default=3, help="rounds of each subject")
    group.add_argument(
        "--webhooks-processes",
        type=int,
        default=2,
        help="tracker worker processes (-c; tracker's default is 2)",
    )


# -- the receiver: a separate process --------------------------------------------------------

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class _Sink(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.lock = threading.Lock()
        self.count = 0
        self.connections = 0
        self.samples: list[dict[str, Any]] = []


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one write per answer, sent at once

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def sink(self) -> _Sink:
        assert isinstance(self.server, _Sink)
        return self.server

    def setup(self) -> None:
        super().setup()
        with self.sink.lock:
            self.sink.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.sink.lock:
            self.sink.count += 1
            if len(self.sink.samples) < SAMPLES:
                headers = {k.lower(): v for k, v in self.headers.items()}
                self.sink.samples.append({"headers": headers, "body": body.decode()})
        self.wfile.write(OK)

    def do_GET(self) -> None:
        with self.sink.lock:
            answer = json.dumps(
                {
                    "count": self.sink.count,
                    "connections": self.sink.connections,
                    "samples": self.sink.samples,
                }
            )
            if self.path == "/reset":
                self.sink.count, self.sink.connections, self.sink.samples = 0, 0, []
        data = answer.encode()
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )


def serve() -> None:
    """The receiver process's body: print the port, then serve until terminated."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sink = _Sink()
    print(sink.server_address[1], flush=True)
    sink.serve_forever(poll_interval=0.2)


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    """The receiver, in its own process (its own interpreter lock); yields its base URL."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    )
    process = subprocess.Popen(
        [sys.executable, "-c", "from bench.webhooks import serve; serve()"],
        stdout=subprocess.PIPE,
        env=env,
        cwd=root,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"the webhook receiver did not start (it said {line!r})")
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        process.terminate()
        process.wait(10)


def receiver_stats(url: str, *, reset: bool = False) -> dict[str, Any]:
    answer = requests.get(url + ("/reset" if reset else "/stats"), timeout=10)
    answer.raise_for_status()
    stats: dict[str, Any] = answer.json()
    return stats


# -- the outbox ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outbox:
    url: str  # the database
    endpoint_url: str
    secret: str
    count: int


def fill_outbox(database_url: str, endpoint_url: str, count: int) -> Outbox:
    """One endpoint, one finished task, `count` realistic `task.completed` deliveries."""
    now = utc_now()
    secret = generate_secret()
    with db.session_scope(database_url) as session:
        task_pk = session.execute(
            insert(TrackedTask)
            .values(
                provider="tensorslab",
                task_id="bench-webhooks",
                status=TaskStatus.COMPLETED.value,
                result_urls=[],
                details={},
                task_metadata={},
                created_at=now,
                updated_at=now,
                completed_at=now,
                poll_count=0,
                error_count=0,
                consecutive_errors=0,
            )
            .returning(TrackedTask.id)
        ).scalar_one()
        endpoint_id = session.execute(
            insert(WebhookEndpoint)
            .values(
                url=endpoint_url,
                events=["task.completed"],
                secret=secret,
                enabled=True,
                created_at=now,
                updated_at=now,
            )
            .returning(WebhookEndpoint.id)
        ).scalar_one()
        session.execute(
            insert(WebhookDelivery),
            [
                {
                    "message_id": new_message_id(),
                    "endpoint_id": endpoint_id,
                    "task_pk": task_pk,
                    "event_type": "task.completed",
                    "payload": _body(number, now),
                    "status": "delivered",
                    "attempt_count": 0,
                    "next_attempt_at": None,
                    "created_at": now,
                    "updated_at": now,
                }
                for number in range(count)
            ],
        )
    return Outbox(database_url, endpoint_url, secret, count)


def _body(number: int, at: datetime) -> str:
    return payload_body(
        event_type="task.completed",
        occurred_at=at,
        task_id=f"7f3a{number:08d}e1b2c3d4",
        provider="tensorslab",
        old_status=TaskStatus.UPLOADING,
        new_status=TaskStatus.COMPLETED,
        result_urls=[f"https://cdn.example/videos/{number}.mp4"],
        upstream_message=None,
        last_error=None,
        details={"resolution": "720p", "duration": 5, "fps": 24, "seed": number, "ratio": "16:9"},
        metadata={"customer": "bench", "order": number},
        registered_at=at,
        completed_at=at,
    )


def make_pending(outbox: Outbox, count: int) -> None:
    """The first `count` deliveries pending and due now, the rest done; no attempts kept."""
    now = utc_now()
    with db.get_engine(outbox.url).begin() as connection:
        connection.execute(text("DELETE FROM delivery_attempts"))
        first_ids = select(WebhookDelivery.id).order_by(WebhookDelivery.id).limit(count)
        connection.execute(
            update(WebhookDelivery).values(
                status="delivered", next_attempt_at=None, lease_token=None, lease_expires_at=None
            )
        )
        connection.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(first_ids.scalar_subquery()))
            .values(
                status="pending",
                attempt_count=0,
                next_attempt_at=now,
                last_status_code=None,
                last_error=None,
                delivered_at=None,
            )
        )
    with (
        db.get_engine(outbox.url)
        .connect()
        .execution_options(isolation_level="AUTOCOMMIT") as connection
    ):
        connection.execute(text("VACUUM ANALYZE webhook_deliveries, delivery_attempts"))


ATTEMPTS = """
SELECT count(*) FILTER (WHERE succeeded), count(*) FILTER (WHERE NOT succeeded)
FROM delivery_attempts
"""


def attempt_counts(outbox: Outbox) -> tuple[int, int]:
    """(successful, failed) attempts recorded since make_pending(): each is committed with the
    delivery's new status."""
    with db.get_engine(outbox.url).connect() as connection:
        succeeded, failed = connection.execute(text(ATTEMPTS)).one()
    return int(succeeded), int(failed)


# -- tracker: ticks in this process, a real worker process ---------------------------------


@dataclass(slots=True)
class Worker:
    process: subprocess.Popen[bytes]
    folder: Path
    queue_name: str

    def log(self) -> str:
        path = self.folder / "worker.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _worker_env(outbox: Outbox, folder: Path, queue_name: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TRACKER_", "TENSORSLAB_"))
    }
    env.update(
        TRACKER_DATA_DIR=str(folder),
        TRACKER_DATABASE_URL=outbox.url,
        TRACKER_BROKER_URL=REDIS_URL,
        TRACKER_QUEUE=queue_name,
        TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        TENSORSLAB_API_KEY="bench-unused",  # the worker refuses to start without one
    )
    return env


@contextlib.contextmanager
def tracker_worker(outbox: Outbox, processes: int) -> Iterator[Worker]:
    folder = Path(tempfile.mkdtemp(prefix="tracker-bench-worker-"))
    queue_name = f"bench-webhooks-{uuid.uuid4().hex[:8]}"
    with (folder / "worker.log").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tracker",
                "worker",
                "-c",
                str(processes),
                "--loglevel",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_worker_env(outbox, folder, queue_name),
            cwd=folder,
            start_new_session=True,
        )
    worker = Worker(process, folder, queue_name)
    try:
        yield worker
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        delete_queue(REDIS_URL, queue_name)
        shutil.rmtree(folder, ignore_errors=True)


def _ticker(queue_name: str) -> Celery:
    app = Celery("bench-ticks", broker=REDIS_URL)
    app.conf.task_default_queue = queue_name
    app.conf.broker_transport_options = {"visibility_timeout": 3600}
    return app


def tick(outbox: Outbox, app: Celery, settings: Settings) -> int:
    """What beat's tick does for deliveries: claim the due ones, one message per batch."""
    with db.session_scope(outbox.url) as session:
        batches = claim_due_deliveries(
            session,
            now=utc_now(),
            limit=settings.claim_limit,
            lease_s=settings.webhook_lease_s,
            batch_size=settings.webhook_batch_size,
        )
    for batch in batches:
        app.send_task("tracker.deliver", args=[batch.to_message()], expires=batch.lease_expires_at)
    return sum(len(batch.row_ids) for batch in batches)


def tracker_round(
    outbox: Outbox, worker: Worker, app: Celery, settings: Settings, count: int
) -> float:
    """Send `count` pending deliveries through tracker; returns the seconds it took."""
    make_pending(outbox, count)
    deadline = time.monotonic() + max(120.0, count / 20)
    started = time.perf_counter()
    next_tick = started
    while True:
        now = time.perf_counter()
        if now >= next_tick:
            tick(outbox, app, settings)
            next_tick += settings.tick_interval_s
        delivered, failed = attempt_counts(outbox)
        if delivered >= count:
            return time.perf_counter() - started
        if failed or worker.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"tracker delivered {delivered} of {count} ({failed} failed attempts); "
                f"worker log:\n{worker.log()}"
            )
        time.sleep(0.02)


# -- the plain loop ------------------------------------------------------------------------


def plain_round(outbox: Outbox, threads: int, count: int) -> float:
    """POST the first `count` bodies, signed, from `threads` threads; returns the seconds."""
    with db.get_engine(outbox.url).connect() as connection:
        jobs = connection.execute(
            select(WebhookDelivery.message_id, WebhookDelivery.payload)
            .order_by(WebhookDelivery.id)
            .limit(count)
        ).all()
    work: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
    for job in jobs:
        work.put((job.message_id, job.payload))
    signer = Webhook(outbox.secret)
    failures: list[str] = []

    def sender() -> None:
        with requests.Session() as http:
            while True:
                try:
                    message_id, payload = work.get_nowait()
                except queue.Empty:
                    return
                at = datetime.now(UTC)
                headers = {
                    "webhook-id": message_id,
                    "webhook-timestamp": str(int(at.timestamp())),
                    "webhook-signature": signer.sign(message_id, at, payload),
                    "content-type": "application/json",
                    "user-agent": USER_AGENT,
                }
                answer = http.post(
                    outbox.endpoint_url,
                    data=payload.encode(),
                    headers=headers,
                    timeout=(5, 15),
                    allow_redirects=False,
                )
                if not answer.ok:
                    failures.append(f"HTTP {answer.status_code}")

    started = time.perf_counter()
    pool = [threading.Thread(target=sender) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"the plain loop got {len(failures)} failures: {failures[:3]}")
    return elapsed


# -- the scenario ----------------------------------------------------------------------------


def check_round(receiver_url: str, outbox: Outbox, count: int, who: str) -> int:
    """The receiver got every request of the round, and the sampled ones verify.

    Returns how many TCP connections the round opened (keep-alive: about one per thread).
    """
    stats = receiver_stats(receiver_url, reset=True)
    if stats["count"] < count:
        raise RuntimeError(f"{who}: the receiver got {stats['count']} of {count} requests")
    for sample in stats["samples"]:
        verify_signature(body=sample["body"], headers=sample["headers"], secret=outbox.secret)
    return int(stats["connections"])


def warm_up(outbox: Outbox, worker: Worker, app: Celery, settings: Settings, url: str) -> None:
    """Until the worker has sent a first round: its processes are up and connected."""
    count = min(outbox.count, 2 * settings.webhook_batch_size * settings.webhook_concurrency)
    tracker_round(outbox, worker, app, settings, count)
    plain_round(outbox, 2, count)
    receiver_stats(url, reset=True)


def run(args: argparse.Namespace) -> ScenarioResult:
    settings = Settings(database_url="sqlite://")  # tracker's defaults for what the tick does
    count, rounds, processes = (
        args.webhooks_deliveries,
        args.webhooks_rounds,
        args.webhooks_processes,
    )
    threads = processes * settings.webhook_concurrency
    plain_s: list[float] = []
    tracker_s: list[float] = []
    connections: dict[str, list[int]] = {"plain loop": [], "tracker": []}
    with (
        receiver() as receiver_url,
        bench_database("postgres", "bench_webhooks") as database_url,
    ):
        outbox = fill_outbox(database_url, receiver_url + "/hooks", count)
        with tracker_worker(outbox, processes) as worker:
            app = _ticker(worker.queue_name)
            warm_up(outbox, worker, app, settings, receiver_url)
            for _ in range(rounds):
                plain_s.append(plain_round(outbox, threads, count))
                connections["plain loop"].append(
                    check_round(receiver_url, outbox, count, "plain loop")
                )
                tracker_s.append(tracker_round(outbox, worker, app, settings, count))
                connections["tracker"].append(check_round(receiver_url, outbox, count, "tracker"))
        db.dispose_engine()
    plain_rate = count / statistics.median(plain_s)
    tracker_rate = count / statistics.median(tracker_s)
    plain_name = f"plain loop ({threads} threads, requests.Session each)"
    ratio = tracker_rate / plain_rate
    return ScenarioResult(
        scenario=SCENARIO,
        rows=(
            Row(subject=plain_name, metric="deliveries/s", value=plain_rate),
            Row(
                subject=f"tracker (tracker worker -c {processes}, ticks every "
                f"{settings.tick_interval_s:g} s)",
                metric="deliveries/s",
                value=tracker_rate,
                ratio=ratio,
                baseline=plain_name,
                target=f">= {TARGET_RATIO:g}x plain loop",
                met=ratio >= TARGET_RATIO,
            ),
        ),
        parameters={
            "deliveries per round": count,
            "rounds of each (median reported)": rounds,
            "plain loop seconds": [round(s, 2) for s in plain_s],
            "tracker seconds": [round(s, 2) for s in tracker_s],
            "tracker worker processes (-c)": processes,
            "plain loop threads": threads,
            "TRACKER_TICK_INTERVAL_S": settings.tick_interval_s,
            "TRACKER_CLAIM_LIMIT": settings.claim_limit,
            "TRACKER_WEBHOOK_BATCH_SIZE": settings.webhook_batch_size,
            "TRACKER_WEBHOOK_CONCURRENCY": settings.webhook_concurrency,
            "TRACKER_WEBHOOK_LEASE_S": settings.webhook_lease_s,
            "broker": "Redis " + REDIS_URL.rsplit("/", 1)[-1].join(("(database ", ")")),
            "body bytes": len(_body(0, utc_now()).encode()),
            "receiver connections opened per round": connections,
        },
        notes=(
            "tracker's time runs from the first tick until the database records every delivery "
            "as delivered (attempts written, endpoint updated); the plain loop's until its last "
            "answer. Both reach the same receiver process, which verifies a sample of "
            "signatures after each round.",
            "Profile (pyinstrument over send_batch, 600 deliveries in one process, before the "
            "fix that came with this benchmark): 78 % of the time was spent recording, four "
            "database round trips per delivery (the delivery's UPDATE, the attempt's INSERT, "
            "the endpoint's SELECT ... FOR UPDATE and its UPDATE), and the endpoint's row lock "
            "serialized the two worker processes; tracker ran at 0.14x the plain loop. "
            "`send_batch` now locks the batch's rows still leased in one SELECT, writes them in "
            "one executemany (pipelined by psycopg), inserts the attempts in one statement and "
            "locks and writes each endpoint once per batch.",
            "Profile after that fix (py-spy over both worker processes, 10,000 deliveries): 58 % "
            "of the samples are in the POSTs, waiting on the receiver; the rest is loading and "
            "recording batches and Celery. The gap to the plain loop is concurrency lost at each "
            "batch's edges: a worker process sends at most TRACKER_WEBHOOK_CONCURRENCY (8) at a "
            "time, a batch of 20 goes out in waves of 8, 8 and 4, and nothing is sent while a "
            "batch is loaded or recorded, whereas the plain loop keeps 16 requests in flight "
            "all the time. Raising TRACKER_WEBHOOK_CONCURRENCY, the batch size or the worker's "
            "-c should narrow it (not measured here: the benchmark keeps the defaults); "
            "overlapping one batch's recording with the next batch's POSTs would close most of "
            "it in code.",
            "Profile after that (py-spy with idle samples, the main threads of both worker "
            "processes, 10,000 deliveries, on a machine loaded by other work): 27 % of their "
            "time went to starting each batch's 8 threads (`Thread.start` waits for each new "
            "thread to get the interpreter lock while the others send) and 13 % to the claim "
            "after each batch. `send_batch` now keeps one pool of threads per process. Writing "
            "finished attempts as they came was tried: most batches became a chunk of 1-4 and "
            "one of the rest, and the endpoint's row lock, held by the other process, took 14 %; "
            "a chunk's transaction costs about the same whatever its size, so splitting a quick "
            "batch adds work and shortens nothing. So chunks are written only when a batch "
            "outlasts `CHUNK_WAIT_S`, the endpoint is locked only after the deliveries and "
            "attempts are written (4 %), and a capped claim leaves out endpoints with no room "
            "before ranking. The main threads are then busy with the database about two thirds "
            "of the time (writing 37 %, the claim 18 %, loading 15 %), when the process sends "
            "nothing; overlapping that with the next batch's POSTs needs a write that outlives "
            "its Celery task (not done).",
        ),
    )


def main() -> None:
    from bench.__main__ import run_alone

    run_alone("webhooks")


if __name__ == "__main__":
    main()
