"""Metrics from every host: each worker serves its own counters at /metrics on its port, whatever
data folder it has, and a port that is taken stops a worker (or `tracker up`) before it starts.

Real processes: `tracker worker`, `beat` and `up` against PostgreSQL and Redis (or SQLite and the
embedded broker), the simulator, and a webhook receiver. Tests wait for conditions with generous
deadlines; they never assert that something was fast.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from tests.processes import Processes
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import ProcessHeartbeat
from tracker.tasks import queries, register
from tracker.testing.receiver import WebhookReceiver
from tracker.testing.simulator import Simulator, Step, TaskScript
from tracker.webhooks import endpoints
from tracker.webhooks.guard import AddressPolicy

pytestmark = pytest.mark.e2e
DEADLINE_S = 90
TASKS = [f"metrics-{number}" for number in range(8)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _free_port_pair() -> int:
    """A port P such that P and P + 1 are both free now (`tracker up` uses both)."""
    while True:
        port = _free_port()
        if port < 65535 and _is_free(port + 1):
            return port


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def _taken_port(port: int = 0) -> Iterator[int]:
    """A port (any free one by default) something else listens on while the block lasts."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen()
        yield int(other.getsockname()[1])


def _counter(port: int, name: str) -> float:
    """The sum of `name`'s samples on the worker's /metrics (0 while it has none)."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def _register(database_url: str, *task_ids: str) -> None:
    with db.session_scope(database_url) as session:
        register.register(session, list(task_ids), now=utc_now(), first_poll_delay_s=0)


def _heartbeats(database_url: str) -> int:
    with db.read_scope(database_url) as session:
        return int(session.scalar(select(func.count()).select_from(ProcessHeartbeat)) or 0)


def _sqlite(tmp_path: Path) -> str:
    from tracker.db import migrate

    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    migrate.upgrade(url)
    return url


def test_two_workers_with_separate_data_folders_each_serve_their_own_polls(
    clean_postgres_url: str,
    redis_url: str,
    simulator: Simulator,
    processes: Callable[..., Processes],
    tmp_path: Path,
) -> None:
    database_url = clean_postgres_url
    for task_id in TASKS:
        simulator.add_task(TaskScript(task_id, (Step(2, polls=6), Step(3))))
    _register(database_url, *TASKS)
    ports = {"a": _free_port(), "b": _free_port()}
    while ports["b"] == ports["a"]:
        ports["b"] = _free_port()
    shared = {
        "database_url": database_url,
        "broker_url": redis_url,
        "simulator": simulator,
        "TRACKER_QUEUE": f"tracker-metrics-{ports['a']}",
        "TRACKER_POLL_BATCH_SIZE": "1",  # a message per task: both workers get some
    }
    hosts = {
        name: processes(
            **shared,
            TRACKER_DATA_DIR=str(tmp_path / f"host-{name}"),
            TRACKER_WORKER_METRICS_PORT=str(port),
        )
        for name, port in ports.items()
    }
    for name, group in hosts.items():
        group.start(f"worker-{name}", "worker", "--queues", "polls", "--concurrency", "2")
        summary = group.wait_for_line(f"worker-{name}", "  metrics ", timeout_s=DEADLINE_S)
        assert summary.split() == ["metrics", f"http://127.0.0.1:{ports[name]}/metrics"]
    hosts["a"].start("beat", "beat")

    # Every poll the simulator answered is counted once, by the worker that made it.
    polls: dict[str, float] = {}
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        for group in hosts.values():
            group.check_alive()
        polls = {name: _counter(port, "tracker_polls_total") for name, port in ports.items()}
        with db.read_scope(database_url) as session:
            ended = all(task.status.is_terminal for task in queries.list_tasks(session))
        if ended and sum(polls.values()) == simulator.stats()["queries"]:
            break
        time.sleep(0.3)
    else:
        logs = "\n".join(group.logs() for group in hosts.values())
        pytest.fail(f"{polls} against {simulator.stats()['queries']} queries\n{logs}")

    assert polls["a"] > 0 and polls["b"] > 0, polls
    assert sum(polls.values()) >= len(TASKS) * 7  # 6 polls processing, 1 completed, each
    for name in ports:  # each worker's files in its own data folder, and only there
        [worker_folder] = (tmp_path / f"host-{name}" / "metrics").glob("*/*")
        assert list(worker_folder.glob("counter_*.db")), worker_folder
    assert _counter(ports["a"], "tracker_upstream_latency_seconds_count") == polls["a"]


def test_a_worker_whose_metrics_port_is_taken_stops_before_it_starts(
    tmp_path: Path, simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    database_url = _sqlite(tmp_path)
    with _taken_port() as port:
        group = processes(
            database_url=database_url,
            broker_url="filesystem://",
            simulator=simulator,
            TRACKER_WORKER_METRICS_PORT=str(port),
        )
        worker = group.start("worker", "worker")
        code = worker.wait(timeout=DEADLINE_S)

    assert code == 1
    assert group.log("worker").splitlines() == [
        f"error: cannot serve the worker's metrics on 127.0.0.1:{port}: Address already in use "
        f"(TRACKER_WORKER_METRICS_PORT={port}: choose a free port, or unset it for none)"
    ]
    assert _heartbeats(database_url) == 0  # Celery never started: no worker was ever ready


def test_up_refuses_a_taken_webhook_metrics_port_before_starting_any_child(
    tmp_path: Path, simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    database_url = _sqlite(tmp_path)
    simulator.add_task(TaskScript("metrics-due", (Step(3),)))
    _register(database_url, "metrics-due")  # due now: a started beat and worker would poll it
    port = _free_port_pair()
    with _taken_port(port + 1) as taken:  # the webhook worker's
        group = processes(
            database_url=database_url,
            broker_url="filesystem://",
            simulator=simulator,
            TRACKER_WORKER_METRICS_PORT=str(port),
        )
        up = group.start("up", "up", "--no-api")
        code = up.wait(timeout=DEADLINE_S)

    assert code == 1
    assert group.log("up").splitlines() == [
        f"error: cannot serve the webhook worker's metrics on 127.0.0.1:{taken}: Address already "
        f"in use (TRACKER_WORKER_METRICS_PORT={taken - 1}, and {taken} for the webhook worker: "
        "choose a free port, or unset it for none)"
    ]
    time.sleep(2)  # a child started anyway would have polled by now
    assert simulator.stats()["queries"] == 0
    assert _heartbeats(database_url) == 0


def test_up_serves_the_poll_workers_metrics_on_the_port_and_the_webhook_workers_on_the_next(
    tmp_path: Path, simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    database_url = _sqlite(tmp_path)
    port = _free_port_pair()
    simulator.add_task(TaskScript("metrics-up", (Step(2, polls=1), Step(3))))
    group = processes(
        database_url=database_url,
        broker_url="filesystem://",
        simulator=simulator,
        TRACKER_WORKER_METRICS_PORT=str(port),
    )
    with WebhookReceiver() as receiver:
        with db.session_scope(database_url) as session:
            created = endpoints.add_endpoint(
                session,
                receiver.url + "/hook",
                events=["task.completed"],
                now=utc_now(),
                policy=AddressPolicy.from_setting("127.0.0.0/8"),
            )
        assert created.secret is not None
        receiver.set_secrets([created.secret])
        _register(database_url, "metrics-up")
        group.start("up", "up", "--no-api", "--concurrency", "1")
        line = group.wait_for_line("up", "  metrics ", timeout_s=DEADLINE_S)
        assert line.split()[1:] == [
            f"http://127.0.0.1:{port}/metrics",
            "(polls),",
            f"http://127.0.0.1:{port + 1}/metrics",
            "(webhooks)",
        ]
        receiver.wait_for(1, timeout_s=DEADLINE_S)

        deadline = time.monotonic() + DEADLINE_S
        counts: tuple[float, ...] = ()
        while time.monotonic() < deadline:
            group.check_alive()
            counts = (
                _counter(port, "tracker_polls_total"),
                _counter(port, "tracker_webhook_sends_total"),
                _counter(port + 1, "tracker_polls_total"),
                _counter(port + 1, "tracker_webhook_sends_total"),
            )
            if counts == (2, 0, 0, 1):
                break
            time.sleep(0.3)
        assert counts == (2, 0, 0, 1), group.logs()
