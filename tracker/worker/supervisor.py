"""`tracker up`: a small supervisor of the workers (beat embedded in the poll worker) and the API.

Two workers, so that webhooks cannot starve polling: "worker" consumes ticks and poll batches
(`-c` processes, beat embedded), "webhooks" consumes deliveries (TRACKER_WEBHOOK_WORKERS
processes). A receiver that answers slowly then holds webhook processes only.

A Celery worker running in the process that systemd or `docker stop` signals had two ways to
outlive its stop: SIGTERM to the whole process group reaches the prefork pool's children at the
same moment as the worker, and a child killed while it held the pool's queue lock leaves the
worker blocked for ever in billiard's finalizer (`Pool._help_stuff_finish`); and SIGKILL of the
worker left the API process and the embedded beat running, so the next `tracker up` found its
port taken.

So `run_up` checks everything first (its one-line errors reach the user before any child
exists), then starts the worker and the API as child processes, each in its own session so that
a signal to `tracker up`'s process group reaches only the supervisor, and each dying with the
supervisor (`lifetime.die_with_parent`). On SIGTERM, SIGINT or SIGHUP it forwards SIGTERM to
each child's main process (so the worker stops its own pool in order), waits up to
`settings.shutdown_grace_s`, then SIGKILLs each child's whole process group and exits. If a child
exits on its own, it stops the others and exits non-zero. A second stop signal kills at once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from tracker import db
from tracker.errors import PortUnavailable
from tracker.settings import Settings
from tracker.worker import startup
from tracker.worker.lifetime import can_die_with_parent, die_with_parent
from tracker.worker.metrics_server import SETTING, metrics_url, port_fix
from tracker.worker.processes import check_port_free, preflight

__all__ = ["run_up"]

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)
POLL_S = 0.05  # how often the supervisor looks at its children


def run_up(
    settings: Settings,
    *,
    concurrency: int,
    loglevel: str,
    with_api: bool,
    log_file: Path | None = None,
) -> int:
    """Run `tracker up`: the poll worker (beat embedded), the webhook worker and the API as
    supervised child processes.

    Checks everything first, so that a missing key, database, broker or port is one line
    before anything starts, then prints one summary (the children print none). With
    `log_file`, every child appends its logs and whatever else it writes there. Returns the
    exit code: 0 after a stop that every child completed in time, 1 if a child had to be
    killed or exited on its own.
    """
    preflight(settings, needs_api_key=True)
    if with_api:
        check_port_free(settings.api_host, settings.api_port)
    metrics_ports = _metrics_ports(settings, with_api=with_api)
    db.dispose_engine()  # the children open their own; this process keeps no connection
    global _file_logging
    _file_logging = log_file is not None
    startup.configure_logging(loglevel, log_file)
    lines = startup.summary_lines(
        settings,
        role="up: a poll worker with beat, a webhook worker" + (", the API" if with_api else ""),
        loglevel=loglevel,
        log_file=log_file,
        concurrency=(
            f"{startup.processes(concurrency)} polling, "
            f"{startup.processes(settings.webhook_workers)} sending webhooks"
        ),
        api_address=f"http://{settings.api_host}:{settings.api_port}" if with_api else None,
        metrics=", ".join(
            f"{metrics_url(settings.worker_metrics_host, port)} ({kind})"
            for kind, port in metrics_ports.items()
        )
        or None,
    )
    startup.print_summary(lines, log_file=log_file)
    quiet = ["--no-summary"] + ([f"--log-file={log_file.resolve()}"] if log_file else [])
    children = {
        "worker": _tracker_command(
            "worker",
            "--beat",
            "--queues=polls",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            *_metrics_option(metrics_ports, "polls"),
            *quiet,
        ),
        "webhooks": _tracker_command(
            "worker",
            "--queues=webhooks",
            f"--concurrency={settings.webhook_workers}",
            f"--loglevel={loglevel}",
            *_metrics_option(metrics_ports, "webhooks"),
            *quiet,
        ),
    }
    if with_api:
        children["api"] = _tracker_command("api", "--loglevel", loglevel.lower(), *quiet)
    return _Supervisor(children, grace_s=settings.shutdown_grace_s, log_file=log_file).run()


def _metrics_ports(settings: Settings, *, with_api: bool) -> dict[str, int]:
    """The metrics port of each worker, by the kind it consumes: TRACKER_WORKER_METRICS_PORT
    for the poll worker, the next one for the webhook worker; {} when it is unset.

    Raises PortUnavailable before any child starts when either cannot be served.
    """
    port = settings.worker_metrics_port
    if port is None:
        return {}
    ports = {"polls": port, "webhooks": port + 1}
    source = f"{SETTING}={port}, and {port + 1} for the webhook worker"
    if ports["webhooks"] > 65535:
        raise PortUnavailable(
            f"{SETTING}={port} leaves no port for the webhook worker's metrics (`tracker up` "
            "serves them on the next port): choose at most 65534, or unset it for none"
        )
    if with_api and settings.api_port in ports.values():
        raise PortUnavailable(
            f"{SETTING}={port} (and the next port, the webhook worker's) takes TRACKER_API_PORT="
            f"{settings.api_port}: choose other ports, or unset it for none"
        )
    for kind, number in ports.items():
        check_port_free(
            settings.worker_metrics_host,
            number,
            what=f"the {'poll' if kind == 'polls' else 'webhook'} worker's metrics",
            fix=functools.partial(port_fix, source, host=settings.worker_metrics_host),
        )
    return ports


def _metrics_option(ports: Mapping[str, int], kind: str) -> list[str]:
    return [f"--metrics-port={ports[kind]}"] if kind in ports else []


def _tracker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tracker", *args]


def _say(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"tracker up: {message}", file=sys.stderr, flush=True)
    if _file_logging:
        log.warning("%s", message)


_file_logging = False  # whether `tracker up` logs to a file too (its children do)
log = logging.getLogger("tracker.up")


class _Supervisor:
    """Starts named commands, stops them all on a signal or when one of them ends.

    A child is reaped only after its process group was SIGKILLed: until then its PID (which
    is its group's ID) cannot belong to anyone else, so no signal can reach a stranger.
    """

    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        *,
        grace_s: float,
        log_file: Path | None = None,
    ) -> None:
        self.commands, self.grace_s, self.log_file = commands, grace_s, log_file
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stop_signal: int | None = None
        self.force = False

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
        else:
            self.force = True  # a second Ctrl-C: do not wait any longer

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            return self._run()
        finally:
            self._kill_all()  # whatever happened above, no child outlives this function
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> int:
        can_die_with_parent()  # libc resolved here, not between fork and exec
        for name, command in self.commands.items():
            if self.stop_signal is not None:
                break
            self.children[name] = self._start(command)
        ended = self._wait_for_stop_or_exit()
        if ended is None:
            name = signal.Signals(self.stop_signal or signal.SIGTERM).name
            hint = "; Ctrl-C again to kill them now" if name == "SIGINT" else ""
            _say(f"{name}: stopping {', '.join(self.children)} (at most {self.grace_s:g} s{hint})")
        else:
            others = [name for name in self.children if name != ended]
            _say(
                f"{ended} exited ({_describe(_exit_status(self.children[ended]))})"
                + (f"; stopping {', '.join(others)}" if others else "")
            )
        clean = self._stop_children()
        return 1 if ended is not None or not clean else 0

    def _start(self, command: Sequence[str]) -> subprocess.Popen[bytes]:
        extra: dict[str, Any] = {}
        if os.name == "posix":
            extra["start_new_session"] = True  # a signal to our group reaches only us
            if can_die_with_parent():
                extra["preexec_fn"] = functools.partial(die_with_parent, os.getpid())
        if self.log_file is None:
            return subprocess.Popen(list(command), **extra)
        # What a child prints besides its logs (a traceback, Celery's shutdown notes) too.
        with self.log_file.open("ab") as output:
            return subprocess.Popen(list(command), stdout=output, stderr=output, **extra)

    def _wait_for_stop_or_exit(self) -> str | None:
        """None once a stop signal came, or the name of a child that exited first."""
        while self.stop_signal is None:
            for name, child in self.children.items():
                if _exit_status(child) is not None:
                    return name
            time.sleep(POLL_S)
        return None

    def _stop_children(self) -> bool:
        """SIGTERM each child, wait up to the grace period, kill what is left; True if every
        child ended in time, by itself."""
        for child in self.children.values():
            if _exit_status(child) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)  # its main process: it stops its own
        deadline = time.monotonic() + self.grace_s
        while not self.force and time.monotonic() < deadline:
            if all(_exit_status(child) is not None for child in self.children.values()):
                break
            time.sleep(POLL_S)
        statuses = {name: _exit_status(child) for name, child in self.children.items()}
        late = [name for name, status in statuses.items() if status is None]
        if late:
            why = "asked twice" if self.force else f"still running after {self.grace_s:g} s"
            _say(f"killing {', '.join(late)}: {why}")
        self._kill_all()
        # uvicorn ends by raising the SIGTERM it handled again: a clean stop as well.
        return all(status in (0, -signal.SIGTERM) for status in statuses.values())

    def _kill_all(self) -> None:
        """SIGKILL each child's process group (what it left behind too), then reap it."""
        for child in self.children.values():
            if child.returncode is not None:
                continue  # reaped already: its PID may be someone else's by now
            killpg = getattr(os, "killpg", None)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if killpg is not None:
                    killpg(child.pid, signal.SIGKILL)  # its own session: group ID = its PID
                else:
                    child.kill()
            child.wait()


def _exit_status(child: subprocess.Popen[bytes]) -> int | None:
    """The child's exit code (minus the signal that killed it), None while it runs.

    Leaves an exited child unreaped (a zombie) where the platform allows, see `_Supervisor`.
    """
    if child.returncode is not None:
        return child.returncode
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return child.poll()
    try:
        result = waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except OSError:  # not our child any more (ChildProcessError), or no waitid here after all
        return child.poll()
    if result is None:
        return None
    return int(result.si_status) if result.si_code == os.CLD_EXITED else -int(result.si_status)


def _describe(status: int | None) -> str:
    if status is None:
        return "still running"
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-status).name}"
    return f"code {status}"
