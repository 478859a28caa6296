"""The live pieces the throughput and detection benchmarks run against, each in its own process.

- `SimulatorProcess`: `tracker simulate` in a child process (so the benchmark's own threads never
  share its GIL), filled through its admin API, counting the queries it answers;
- `bench_database`: a fresh PostgreSQL database (migrated, dropped afterwards), or a SQLite file;
- `TrackerProcesses`: real `tracker worker` and `tracker beat` processes on Redis, and the resident
  memory of the worker with its pool children.

PostgreSQL and Redis default to this machine's (`BENCH_POSTGRES_URL`, `BENCH_REDIS_URL`); the
benchmarks use their own Redis database (13) and queues, and their own PostgreSQL databases, so
a test run sharing the servers is never disturbed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psutil
import psycopg
import redis
import requests
from sqlalchemy.engine import make_url

from tracker import db
from tracker.db import migrate

__all__ = [
    "API_KEY",
    "POSTGRES_ADMIN_URL",
    "REDIS_URL",
    "SimulatorProcess",
    "TrackerProcesses",
    "bench_database",
    "delete_queue",
    "tree_rss_bytes",
]

POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
API_KEY = "bench-key"
START_TIMEOUT_S = 30.0


class SimulatorProcess:
    """`tracker simulate` in a child process; `base_url` once started."""

    CHUNK = 5000  # tasks per admin call when creating many

    def __init__(self, *, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None
        self._admin = requests.Session()

    def start(self) -> Self:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tracker", "simulate", "--port", "0", "--api-key", self.api_key],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # "TensorsLab simulator listening on http://..."
        if "http://" not in line:
            self.stop()
            raise RuntimeError(f"the simulator did not start: {line!r}")
        self.base_url = line.strip().rsplit(" ", 1)[-1]
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _terminate(process)
        self._admin.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the simulator is not running")
        return self._process.pid

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


@contextlib.contextmanager
def bench_database(kind: str, name: str) -> Iterator[str]:
    """A fresh, migrated database: `kind` "postgres" (dropped afterwards) or "sqlite"."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix=f"{name}-") as folder:
            url = f"sqlite:///{Path(folder) / 'tracker.db'}"
            migrate.upgrade(url)
            yield url
            db.dispose_engine()
        return
    if kind != "postgres":
        raise ValueError(f"database kind is postgres or sqlite, not {kind!r}")
    database = f"{name}_{uuid.uuid4().hex[:8]}"
    _admin_execute(f'CREATE DATABASE "{database}"')
    url = make_url(POSTGRES_ADMIN_URL).set(database=database).render_as_string(False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        db.dispose_engine()
        _admin_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _admin_execute(statement: str) -> None:
    url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as admin:
        admin.execute(statement.encode())


def delete_queue(broker_url: str, queue: str) -> None:
    """Forget what a run left in its Redis queue: kombu keeps one list per priority step (the
    name alone for priority 0), and a binding set."""
    client = redis.Redis.from_url(broker_url)
    try:
        client.delete(queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9)))
        client.delete(f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    finally:
        client.close()


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants."""
    parent = psutil.Process(pid)
    total = 0
    for process in (parent, *parent.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


class TrackerProcesses:
    """`tracker worker`, `tracker beat` (or any command) as child processes, with `env` on top
    of this environment without its tracker settings."""

    def __init__(self, env: Mapping[str, str], folder: Path) -> None:
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "TENSORSLAB_"))
        }
        self.env = {**base, **env}
        self.folder = folder
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """`python -m tracker ARGS...`, its output in `<folder>/<name>.log`."""
        return self.start_command(name, [sys.executable, "-m", "tracker", *args])

    def start_command(
        self, name: str, command: Sequence[str], *, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Any command, in its own process group (stopping it stops its children too)."""
        with (self.folder / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=cwd or self.folder,
                start_new_session=True,
            )
        self.running[name] = process
        return process

    def check_alive(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log(name)}")

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop_all(self) -> None:
        for name in list(self.running):
            _terminate(self.running.pop(name))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()


def _terminate(process: subprocess.Popen[Any], timeout_s: float = 20.0) -> None:
    """SIGTERM the process (its group when it leads one), SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    try:
        group = os.getpgid(process.pid) if os.getpgid(process.pid) == process.pid else None
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        if group is not None:
            os.killpg(group, signal.SIGTERM)
        else:
            process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if group is not None:
                os.killpg(group, signal.SIGKILL)
            else:
                process.kill()
        process.wait()


def wait_until(condition: Any, *, timeout_s: float, every_s: float = 0.2, what: str) -> None:
    """Call `condition()` until it is true; TimeoutError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:g} s for {what}")
        time.sleep(every_s)
