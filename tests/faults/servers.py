"""Throwaway PostgreSQL and Redis servers of a test's own, on free loopback ports, that the
test may stop, crash and start again; the shared servers on 5432 and 6379 are never touched."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

__all__ = ["MissingTool", "ThrowawayPostgres", "ThrowawayRedis", "free_port"]


class MissingTool(RuntimeError):
    """A program the throwaway server needs is missing or cannot be run; the message says which."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ThrowawayPostgres:
    """`initdb` + `pg_ctl` in a temporary folder: trust auth, 127.0.0.1 only, a free port.

    As root, the programs run as the `postgres` OS user (PostgreSQL refuses to run as root),
    with the folder owned by it. `start()`, `stop(mode)` ("fast": a clean shutdown,
    "immediate": a crash) and `close()` (stop and delete everything).
    """

    def __init__(self) -> None:
        bins = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        )
        found = [b for b in bins if (b / "initdb").exists() and (b / "pg_ctl").exists()]
        on_path = shutil.which("initdb"), shutil.which("pg_ctl")
        if found:
            self.initdb, self.pg_ctl = str(found[-1] / "initdb"), str(found[-1] / "pg_ctl")
        elif all(on_path):
            self.initdb, self.pg_ctl = on_path[0] or "", on_path[1] or ""
        else:
            raise MissingTool(
                "initdb and pg_ctl were found neither under /usr/lib/postgresql/*/bin nor on PATH"
            )
        self.prefix: list[str] = []
        self.owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError as error:
                raise MissingTool("running as root, and there is no `postgres` OS user") from error
            runuser = shutil.which("runuser")
            if runuser is None:
                raise MissingTool("running as root, and `runuser` is missing")
            self.prefix = [runuser, "-u", "postgres", "--"]
            self.owner = (user.pw_uid, user.pw_gid)
        self.folder = Path(tempfile.mkdtemp(prefix="tracker-faults-pg-"))
        if self.owner is not None:
            os.chown(self.folder, *self.owner)
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync", what="initdb")  # fmt: skip

    def _run(self, *command: str, what: str, timeout_s: float = 60) -> None:
        try:
            done = subprocess.run(
                [*self.prefix, *command],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
                cwd=self.folder,  # the postgres user may not enter the test's working folder
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise MissingTool(f"{what} could not be run: {error}") from error
        if done.returncode != 0:
            raise MissingTool(
                f"{what} failed with {done.returncode}: {done.stderr.strip()} {done.stdout.strip()}"
                f"\n{self.server_log()}"
            )

    def server_log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-3000:]
        return ""

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder}"
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start", what="pg_ctl start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop",
                  what="pg_ctl stop")  # fmt: skip

    def close(self) -> None:
        with contextlib.suppress(MissingTool):
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


class ThrowawayRedis:
    """`redis-server` as a child process on a free port, in memory only; `kill()` is kill -9,
    `start()` again brings it back empty on the same port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise MissingTool("redis-server is not on PATH")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = Path(tempfile.mkdtemp(prefix="tracker-faults-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout_s: float = 20) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--daemonize", "no", "--dir", str(self.folder)]
        with (self.folder / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise MissingTool(
                        f"redis-server did not start on port {self.port}: "
                        f"{(self.folder / 'server.log').read_text(errors='replace')[-2000:]}"
                    ) from None
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        """kill -9: everything it held is gone."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
