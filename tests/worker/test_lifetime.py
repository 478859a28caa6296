"""A process that gives up on its shutdown ends its children itself, even a stopped one that
never got to ask to die with its parent (the race that left a SIGSTOPped pool child behind)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import psutil
import pytest

CHILD = textwrap.dedent(
    """
    import os, signal, subprocess, sys
    from tracker.worker.lifetime import kill_children

    stopped = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    os.kill(stopped.pid, signal.SIGSTOP)  # stopped before it could ask for PDEATHSIG
    print(stopped.pid, flush=True)
    sys.stdin.readline()
    print(kill_children(), flush=True)
    os._exit(1)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill_children reads /proc")
def test_kill_children_ends_a_stopped_child_that_would_outlive_its_parent() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None and parent.stdin is not None
    stopped_pid = int(parent.stdout.readline())
    # SIGSTOP is delivered asynchronously: wait until the kernel shows the child stopped.
    deadline = time.monotonic() + 30
    while psutil.Process(stopped_pid).status() != psutil.STATUS_STOPPED:
        assert time.monotonic() < deadline, "the child never stopped"
        time.sleep(0.05)
    parent.stdin.write("\n")
    parent.stdin.flush()
    assert int(parent.stdout.readline()) == 1
    parent.wait(timeout=30)

    deadline = time.monotonic() + 30
    while True:
        try:
            if psutil.Process(stopped_pid).status() == psutil.STATUS_ZOMBIE:
                break  # dead, waiting for init to reap it
        except psutil.NoSuchProcess:
            break
        assert time.monotonic() < deadline, "the stopped child outlived its parent"
        time.sleep(0.1)
