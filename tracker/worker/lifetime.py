"""How long a tracker process may live: never past its parent, never past the shutdown grace.

`die_with_parent` asks Linux to SIGKILL this process when its parent dies (PR_SET_PDEATHSIG):
every child of `tracker up`, every prefork pool child and the embedded beat use it, so a
SIGKILLed parent leaves nothing behind. `start_shutdown_watchdog` ends a process whose shutdown
outlives the grace period (a Celery worker stuck in billiard's pool finalizer). Elsewhere than
Linux the first is a no-op and only the deadlines remain.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["can_die_with_parent", "die_with_parent", "kill_children", "start_shutdown_watchdog"]

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux, None elsewhere (or when it cannot be found)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return function


def can_die_with_parent() -> bool:
    """Whether `die_with_parent` works here (Linux). Resolves libc now, not after a fork."""
    return _prctl() is not None


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux only).

    With `parent_pid`, a process whose parent is already gone (it died before the request)
    exits at once. Returns whether the request was made; elsewhere than Linux it does nothing.
    Note that Linux's "parent" is the thread that forked this process.
    """
    prctl = _prctl()
    if prctl is None:
        return False
    if prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0) != 0:
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
    return True


_watchdog_started = threading.Lock()


def start_shutdown_watchdog(grace_s: float, *, what: str = "worker") -> bool:
    """End this process with exit code 1 if it is still alive `grace_s` from now.

    For a shutdown that may hang (a Celery worker waiting on its pool): the timer is a daemon
    thread, so a shutdown that finishes in time is not delayed. Started once per process;
    returns False when it was already running.
    """
    if not _watchdog_started.acquire(blocking=False):
        return False

    def give_up() -> None:
        with contextlib.suppress(Exception):
            os.write(
                2,
                f"{what}: still stopping after {grace_s:g} s (TRACKER_SHUTDOWN_GRACE_S); "
                "exiting now\n".encode(),
            )
        kill_children()
        os._exit(1)  # the rest of its pool children die with it (die_with_parent)

    timer = threading.Timer(grace_s, give_up)
    timer.name = "shutdown-watchdog"
    timer.daemon = True
    timer.start()
    return True


def kill_children() -> int:
    """SIGKILL every child of this process (Linux's /proc; elsewhere nothing); how many.

    `die_with_parent` runs in a child only once it is scheduled after the fork: a child stopped
    or starved before that (SIGSTOP, a loaded machine) would outlive a parent that gives up, so
    the watchdog ends its children itself before it exits.
    """
    me, killed = os.getpid(), 0
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            # "pid (comm) state ppid ...": comm may hold spaces and brackets, so split after it.
            fields = stat.rpartition(")")[2].split()
            if len(fields) > 1 and fields[1] == str(me):
                with contextlib.suppress(OSError):
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed += 1
    return killed
