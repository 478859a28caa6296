"""Child `tracker` processes (worker, beat, api, simulate...) for tests and benchmarks.

`ChildProcesses(folder, env)` starts `python -m tracker ARGS...` (or any command) by name, each
in its own session, so its process group holds it and whatever it forks (a worker's pool);
its output goes to `<folder>/<name>.log`. `stop(name)` sends SIGTERM (a graceful shutdown), and
after `timeout_s` SIGKILLs the whole group; `kill(name)` SIGKILLs the group at once (a crash).
`child_environment()` is this process's environment without tracker's own settings, so a child
reads only the ones it is given.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "STOP_TIMEOUT_S",
    "ChildExited",
    "ChildProcesses",
    "child_environment",
    "stop_process",
    "tracker_command",
]

STOP_TIMEOUT_S = 20.0
SETTING_PREFIXES = ("TRACKER_", "TENSORSLAB_")


class ChildExited(RuntimeError):
    """A child process that should be running has exited; the message holds its logs."""


def tracker_command(*args: str) -> list[str]:
    """`python -m tracker ARGS...` with this interpreter."""
    return [sys.executable, "-m", "tracker", *args]


def child_environment(settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without `TRACKER_*` and `TENSORSLAB_*` variables, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env.update(settings or {})
    return env


def _signal_group(process: subprocess.Popen[Any], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)  # started with start_new_session: its group ID is its PID


def _terminate(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)


def _reap(process: subprocess.Popen[Any], deadline: float) -> None:
    """Wait for the process until `deadline`, then SIGKILL its group: the process if it lingers,
    and any child it left behind."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    _signal_group(process, signal.SIGKILL)
    process.wait()


def _read_from(path: Path, offset: int) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def stop_process(process: subprocess.Popen[Any], *, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM a process started in its own session; SIGKILL its group after `timeout_s`."""
    _terminate(process)
    _reap(process, time.monotonic() + timeout_s)


class ChildProcesses:
    """Named child processes, each in its own session, with their output in `<folder>/*.log`."""

    def __init__(self, folder: Path, env: Mapping[str, str]) -> None:
        self.folder, self.env = folder, dict(env)
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self._log_start: dict[str, int] = {}  # where each name's latest run begins in its log

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """`python -m tracker ARGS...`, its output appended to `<folder>/<name>.log`."""
        return self.start_command(name, tracker_command(*args))

    def start_command(
        self, name: str, command: Sequence[str], *, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Any command, in its own session and process group (stopping it stops its children)."""
        path = self.log_path(name)
        self._log_start[name] = path.stat().st_size if path.exists() else 0
        with path.open("ab") as log:
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

    def stop(self, name: str, *, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM: a graceful shutdown; SIGKILL of its group if it lingers past `timeout_s`."""
        stop_process(self.running.pop(name), timeout_s=timeout_s)

    def kill(self, name: str) -> None:
        """SIGKILL the process and its children: a crash, not a shutdown."""
        process = self.running.pop(name)
        _signal_group(process, signal.SIGKILL)
        process.wait()

    def stop_all(self, *, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop every running process, all at once: one `timeout_s` for them all."""
        processes = [self.running.pop(name) for name in list(self.running)]
        for process in processes:
            _terminate(process)
        deadline = time.monotonic() + timeout_s
        for process in processes:
            _reap(process, deadline)

    def log_path(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def log(self, name: str, *, tail: int = 3000) -> str:
        """The last `tail` characters of one process's log ("" when there is none)."""
        path = self.log_path(name)
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def logs(self, *, tail: int = 4000) -> str:
        """The end of every log in the folder, each under a `--- name.log ---` heading."""
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')[-tail:]}"
            for path in sorted(self.folder.glob("*.log"))
        )

    def check_alive(self) -> None:
        """ChildExited, with the logs, if a process that should be running has exited."""
        for name, process in self.running.items():
            if process.poll() is not None:
                raise ChildExited(f"{name} exited with {process.returncode}\n{self.logs()}")

    def wait_for_line(self, name: str, text: str, *, timeout_s: float = 30.0) -> str:
        """The first line containing `text` that `name`'s latest run wrote to its log.

        ChildExited if the process exits without writing it, TimeoutError after `timeout_s`.
        """
        path, start = self.log_path(name), self._log_start.get(name, 0)
        deadline = time.monotonic() + timeout_s
        while True:
            process = self.running.get(name)
            exited = process is None or process.poll() is not None  # before reading: conclusive
            output = _read_from(path, start)
            for line in output.splitlines():
                if text in line:
                    return line
            if exited:
                code = "?" if process is None else process.returncode
                raise ChildExited(f"{name} exited with {code} before writing {text!r}:\n{output}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout_s:g} s for {name} to write {text!r}")
            time.sleep(0.02)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()
