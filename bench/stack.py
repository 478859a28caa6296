"""The live pieces the benchmarks run against: databases, Redis, and processes of their own.

- `bench_database`: a fresh database migrated by tracker's own migrations, dropped afterwards: a
  PostgreSQL one on `BENCH_POSTGRES_URL` (an admin URL, default the local server's `postgres`
  database with trust auth), created with a unique name, or a SQLite file;
- `REDIS_URL`: the benchmarks' Redis database (`BENCH_REDIS_URL`, default database 12; the test
  suite flushes 14, so never use that one), with a queue of each run's own (`delete_queue`);
- `SimulatorProcess`: `tracker simulate` in a child process (so the benchmark's own threads never
  share its GIL), filled through its admin API, counting the queries it answers;
- `TrackerProcesses`: real `tracker worker` and `tracker beat` processes on Redis, and the resident
  memory of the worker with its pool children (`tree_rss_bytes`);
- `postgres_version`, `redis_version`: what the report records.

A test run sharing the servers is never disturbed: the benchmarks keep to their own databases.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psutil
import psycopg
import redis
import requests

from tracker import db
from tracker.db import migrate
from tracker.testing import postgres
from tracker.testing.processes import (
    ChildExited,
    ChildProcesses,
    child_environment,
    tracker_command,
)

__all__ = [
    "API_KEY",
    "POSTGRES_ADMIN_URL",
    "REDIS_URL",
    "SimulatorProcess",
    "TrackerProcesses",
    "bench_database",
    "delete_queue",
    "postgres_version",
    "redis_version",
    "tree_rss_bytes",
    "wait_until",
]

POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
API_KEY = "bench-key"
START_TIMEOUT_S = 30.0


# -- databases and Redis -------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database(kind: str, name: str) -> Iterator[str]:
    """A fresh, migrated database: `kind` "postgres" (`<name>_<random>`, dropped afterwards) or
    "sqlite" (a file in a temporary folder); yields its SQLAlchemy URL."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix=f"{name}-") as folder:
            url = f"sqlite:///{Path(folder) / 'tracker.db'}"
            migrate.upgrade(url)
            yield url
            db.dispose_engine()
        return
    if kind != "postgres":
        raise ValueError(f"database kind is postgres or sqlite, not {kind!r}")
    with postgres.scratch_database(POSTGRES_ADMIN_URL, name) as url:
        yield url


def postgres_version() -> str:
    try:
        with postgres.admin_connection(POSTGRES_ADMIN_URL) as admin:
            row = admin.execute("SHOW server_version").fetchone()
    except (postgres.PostgresUnavailable, psycopg.Error) as error:
        reason = error.__cause__ or error
        return f"unreachable ({' '.join(str(reason).split())[:80]})"
    return str(row[0]) if row else "unknown"


def redis_version() -> str:
    try:
        info = redis.Redis.from_url(REDIS_URL, socket_timeout=5).info("server")
    except redis.RedisError as error:
        return f"unreachable ({error})"
    return str(info.get("redis_version", "unknown"))


def delete_queue(broker_url: str, queue: str) -> None:
    """Forget what a run left in its Redis queue: kombu keeps one list per priority step (the
    name alone for priority 0), and a binding set."""
    client = redis.Redis.from_url(broker_url)
    try:
        client.delete(queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9)))
        client.delete(f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    finally:
        client.close()


# -- processes -----------------------------------------------------------------------------------


class SimulatorProcess:
    """`tracker simulate` in a child process; `base_url` once started."""

    CHUNK = 5000  # tasks per admin call when creating many

    def __init__(self, *, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.base_url = ""
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._children: ChildProcesses | None = None
        self._admin = requests.Session()

    def start(self) -> Self:
        self._folder = tempfile.TemporaryDirectory(prefix="bench-simulator-")
        self._children = ChildProcesses(Path(self._folder.name), child_environment())
        command = tracker_command("simulate", "--port", "0", "--api-key", self.api_key)
        self._children.start_command("simulator", command, cwd=Path.cwd())
        try:
            # "TensorsLab simulator listening on http://..."
            line = self._children.wait_for_line("simulator", "http://", timeout_s=START_TIMEOUT_S)
        except (ChildExited, TimeoutError) as error:
            self.stop()
            raise RuntimeError(f"the simulator did not start: {error}") from None
        self.base_url = line.strip().rsplit(" ", 1)[-1]
        return self

    def stop(self) -> None:
        children, self._children = self._children, None
        if children is not None:
            children.stop_all()
        folder, self._folder = self._folder, None
        if folder is not None:
            folder.cleanup()
        self._admin.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        process = self._children.running.get("simulator") if self._children else None
        if process is None:
            raise RuntimeError("the simulator is not running")
        return process.pid

    def add_tasks(self, tasks: Sequence[Mapping[str, Any]]) -> None:
        """Create tasks (the JSON form of `TaskScript`) through the admin API, in chunks."""
        for start in range(0, len(tasks), self.CHUNK):
            body = json.dumps({"tasks": list(tasks[start : start + self.CHUNK])})
            reply = self._admin.post(f"{self.base_url}/_sim/tasks", data=body, timeout=60)
            reply.raise_for_status()

    def task_state(self, task_id: str) -> dict[str, Any]:
        reply = self._admin.get(f"{self.base_url}/_sim/tasks/{task_id}", timeout=10)
        reply.raise_for_status()
        state: dict[str, Any] = reply.json()
        return state

    def queries(self) -> int:
        """Status queries answered so far, whatever their outcome."""
        reply = self._admin.get(f"{self.base_url}/_sim/stats", timeout=30)
        reply.raise_for_status()
        return int(reply.json()["queries"])

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)


class TrackerProcesses(ChildProcesses):
    """`tracker worker`, `tracker beat` (or any command, `start_command`) as child processes, with
    `env` on top of this environment without its tracker settings, logs in `folder`."""

    def __init__(self, env: Mapping[str, str], folder: Path) -> None:
        super().__init__(folder, child_environment(env))


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants."""
    parent = psutil.Process(pid)
    total = 0
    for process in (parent, *parent.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def wait_until(
    condition: Callable[[], object], *, timeout_s: float, every_s: float = 0.2, what: str
) -> None:
    """Call `condition()` until it is true; TimeoutError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:g} s for {what}")
        time.sleep(every_s)
